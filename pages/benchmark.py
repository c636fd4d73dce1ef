"""Benchmark loaded models: pick models and a workload, watch the runs, read, compare and export
the stored results. The runs belong to the app (they survive reloads and closed tabs)."""

from __future__ import annotations

import streamlit as st

from ui.benchmark_page import (
    compare,
    live_runs,
    model_picker,
    require_benchmarks,
    results,
    start_button,
    workload_form,
)
from ui.routing import ensure_routed
from ui.service_gate import require_service

ensure_routed()
service = require_service()
_, store = require_benchmarks()

st.subheader("Benchmark")
live_runs()
run_tab, results_tab, compare_tab = st.tabs(["Run", "Results", "Compare"])
with run_tab:
    model_picker()
    workload_form()
    start_button()
with results_tab:
    runs = results(service, store)
with compare_tab:
    compare(store, runs)
