"""The audit history: every load, unload, crash and restart, newest first, with load statistics."""

from __future__ import annotations

import streamlit as st

from lifecycle.service import HISTORY_LIMIT_MAX
from ui.format import duration
from ui.history_view import event_rows, filter_rows, to_csv, to_records
from ui.routing import ensure_routed
from ui.service_gate import require_service
from ui.stats import load_stats

SHOWN_COLUMNS = ("time", "model", "event", "actor", "details")  # the CSV keeps the position too

ensure_routed()
service = require_service()
events = service.history(limit=HISTORY_LIMIT_MAX)
rows = event_rows(events)

st.subheader("History")
with st.container(horizontal=True):
    models = st.multiselect(
        "Model", sorted({r.model for r in rows}), key="history:models", placeholder="All models"
    )
    kinds = st.multiselect(
        "Event", sorted({r.event for r in rows}), key="history:events", placeholder="All events"
    )
shown = filter_rows(rows, models, kinds)

st.caption(f"{len(shown)} of the latest {len(rows)} events")
st.dataframe(to_records(shown), hide_index=True, column_order=SHOWN_COLUMNS, key="history:table")
st.download_button(
    "Download CSV",
    to_csv(shown),
    file_name="dxg-history.csv",
    mime="text/csv",
    icon=":material/download:",
    on_click="ignore",
)

st.subheader("Load times")
stats = [s for s in load_stats(events) if not models or s.model in models]
if stats:
    st.dataframe(
        [
            {
                "model": s.model,
                "loads": s.loads,
                "p50 load": duration(s.p50_s, digits=1),
                "p90 load": duration(s.p90_s, digits=1),
                "crashes": s.crashes,
                "failed starts": s.failed_starts,
                "gave up": s.gave_up,
            }
            for s in stats
        ],
        hide_index=True,
    )
else:
    st.caption("No model has been loaded yet.")
