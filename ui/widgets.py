"""Small Streamlit pieces used by more than one page or the dialog."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

EMPTY_LOG = "(the log is empty so far)"


def log_box(text: str, height: int) -> None:
    """A log tail in a box that keeps its newest line in view, as ``tail -f`` would."""
    with st.container(height=height, autoscroll=True, border=False):
        st.code(text or EMPTY_LOG, language=None, wrap_lines=True)


def rerun_when(condition: Callable[[], bool], every_s: float) -> None:
    """Rerun the whole page once ``condition`` holds, checking every ``every_s`` seconds.

    For a page waiting on something the frame changes (a model becoming ready): the page's own
    content follows without a click, while only this empty fragment ticks meanwhile.
    """

    @st.fragment(run_every=every_s)
    def watch() -> None:
        if condition():
            st.rerun()

    watch()
