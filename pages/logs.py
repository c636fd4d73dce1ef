"""A model's log (logs/{id}.log, or its container's): the last N lines, live while it loads."""

from __future__ import annotations

from typing import Final

import streamlit as st

from lifecycle.core.states import Dot
from lifecycle.service import LifecycleError
from service_access import get_service
from ui.format import dot_md, escape_md
from ui.routing import ensure_routed
from ui.service_gate import require_service
from ui.widgets import log_box

LINE_CHOICES: Final = (50, 200, 1000, 5000)
LIVE_S: Final = 1.0
LOG_HEIGHT_PX: Final = 480

ensure_routed()
service = require_service()
statuses = {s.id: s for s in service.status()}
if not statuses:
    st.info("The catalog lists no models, so there are no logs to show.")
    st.stop()

st.subheader("Logs")
with st.container(horizontal=True):
    model_id = st.selectbox(
        "Model",
        list(statuses),
        format_func=lambda i: statuses[i].name,
        key="logs:model",
    )
    lines = st.segmented_control("Lines", LINE_CHOICES, default=200, key="logs:lines", required=True)

# Only a model that is on its way somewhere gets a live log; a still one stays put, so text
# can be selected and copied without a refresh wiping the selection.
live = statuses[model_id].dot == Dot.AMBER


@st.fragment(run_every=LIVE_S if live else None)
def log_view() -> None:
    status = get_service().status_of(model_id)
    st.caption(
        f"{dot_md(status.dot)} {escape_md(status.status)}" + (" · refreshing every second" if live else "")
    )
    try:
        text = get_service().logs(model_id, tail=int(lines or LINE_CHOICES[1]))
    except LifecycleError as exc:
        st.warning(str(exc))
        return
    log_box(text, LOG_HEIGHT_PX)
    if live and status.dot != Dot.AMBER:
        st.rerun()  # settled: one full run turns the live refresh off


log_view()
