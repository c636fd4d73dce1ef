"""The model chips footer: one chip per model with its status dot, on every page.

A live part (``ui.live``) redraws only itself, so dots follow loads and crashes without
rerunning the page: every second at rest, every ``FAST_S`` while a model or a benchmark moves.
Streamlit queues a timed fragment run while the page script is still busy (it never preempts
it), so a chat reply being streamed is not cut off by a refresh.
"""

from __future__ import annotations

import logging
from typing import Final

import streamlit as st

from lifecycle.core.status_view import ModelStatus
from service_access import ServiceNotRunning, get_service
from ui.format import dot_md, escape_md, size_label
from ui.live import live

log = logging.getLogger(__name__)

LIVE_KEY: Final = "live-chips"  # the footer's live part (``ui.live.hurry`` names it)
DIALOG_KEY: Final = "dialog_model"  # the model whose dialog is open; the frame opens it
CHIP_KEY_PREFIX: Final = "chip-"
EMPTY_TEXT: Final = "No models loaded yet: click a model below to load one."
NO_MODELS_TEXT: Final = "The catalog lists no models: add them to models.yaml."


def chip_key(model_id: str) -> str:
    """Also the chip's CSS class (``st-key-chip-<id>``), which browser tests locate it by."""
    return CHIP_KEY_PREFIX + model_id


def chip_label(status: ModelStatus) -> str:
    return f"{dot_md(status.dot)} {escape_md(status.name)}"


def open_dialog(model_id: str) -> None:
    """Ask the frame to show this model's dialog (tests set the same key to open it)."""
    st.session_state[DIALOG_KEY] = model_id


def _statuses() -> list[ModelStatus] | None:
    try:
        return get_service().status()
    except ServiceNotRunning:
        return None  # the app is stopping; the page says so on its next run
    except Exception:
        # A refresh every few seconds must not turn a passing hiccup (a locked database) into
        # a traceback on every page; the next refresh tries again.
        log.exception("reading model status for the chips failed")
        st.caption(":orange[Model status is unavailable right now; retrying.]")
        return None


def chip_caption(status: ModelStatus) -> str:
    """The size, and the host a model runs on when that is not this machine (``20B · on spark-2``)."""
    size = size_label(status.size)
    return f"{size} · on {status.host}" if status.host else size


def _chip(status: ModelStatus) -> None:
    with st.container(width="content", gap=None):
        if st.button(chip_label(status), key=chip_key(status.id), help=status.status):
            open_dialog(status.id)
            st.rerun()  # the frame, outside this fragment, opens the dialog on a full run
        st.caption(chip_caption(status), width="content")


def chips_footer() -> None:
    live(LIVE_KEY, _chips)


def _chips() -> None:
    statuses = _statuses()
    if statuses is None:
        return
    if not statuses:
        st.caption(NO_MODELS_TEXT)
        return
    if not any(s.loaded for s in statuses):
        st.caption(EMPTY_TEXT)
    with st.container(horizontal=True, gap="small"):
        for status in statuses:
            _chip(status)
