"""The UI script that app.py's ``st.App`` serves: the page router and the frame every page shares
(catalog banner, model chips footer, model dialog)."""

from __future__ import annotations

import streamlit as st

from ui.frame import draw_frame
from ui.service_gate import require_service
from ui.session_gate import require_session

st.set_page_config(page_title="DxGChatBenchMark", page_icon=":material/memory:", layout="wide")

page = st.navigation(
    [
        st.Page("pages/chat.py", title="Chat", icon=":material/chat:", default=True),
        st.Page("pages/benchmark.py", title="Benchmark", icon=":material/speed:"),
        st.Page("pages/history.py", title="History", icon=":material/history:"),
        st.Page("pages/logs.py", title="Logs", icon=":material/article:"),
    ],
    position="top",
)
require_service()
require_session()
draw_frame()
page.run()
