"""The frame every page shares: the catalog banner, the chips footer and the model dialog."""

from __future__ import annotations

from typing import Final

import streamlit as st

from service_access import ServiceNotRunning, get_service
from ui.chips import DIALOG_KEY, chips_footer
from ui.format import escape_md
from ui.model_dialog import model_dialog
from ui.session_gate import sign_out_link

BANNER_REFRESH_S: Final = 2.0


def catalog_banner_text(error: str) -> str:
    return (
        "**models.yaml has an error**, so the app keeps the last catalog it could read. "
        f"Fix the file and this message goes away by itself.\n\n{escape_md(error)}"
    )


def store_banner_text(error: str) -> str:
    return (
        "**Nothing can be recorded right now**: loads and unloads are refused, and models show as "
        f"unknown until the event store takes writes again.\n\n{escape_md(error)}"
    )


@st.fragment(run_every=BANNER_REFRESH_S)
def catalog_banner() -> None:
    """Live, so a fix (or a new mistake) in models.yaml, or a store that can't be written, shows
    without reloading the page."""
    try:
        service = get_service()
    except ServiceNotRunning:
        return
    if service.store_error:
        st.error(store_banner_text(service.store_error), icon=":material/database:")
    if service.catalog_error:
        st.error(catalog_banner_text(service.catalog_error), icon=":material/description:")


def draw_frame() -> None:
    catalog_banner()
    with st.bottom:
        chips_footer()
        sign_out_link()
    if model_id := st.session_state.get(DIALOG_KEY):
        model_dialog(model_id)
