"""Keep every page inside Home.py's router and frame, even on a fresh server's first request.

Streamlit still has its old multipage mode for apps with a ``pages/`` folder: until a script
calls ``st.navigation`` the server runs ``pages/<name>.py`` by itself when that page's URL is
opened, with no chips, no dialog and an automatic sidebar. So when the app restarts and a
browser tab left on /history reconnects first, the page would come up bare and stay so for
every session until someone opened "/". ``st.navigation`` switches that mode off for the
process with the same one-line assignment used here; the rerun then goes through Home.py.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def ensure_routed() -> None:
    """Call first in every page script: a page run without Home.py reruns through it."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
