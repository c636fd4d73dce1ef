"""How pages reach the lifecycle service: through ``service_access.get_service`` only, never by
building one (a page script reruns on every click; the app's lifespan owns the service)."""

from __future__ import annotations

from typing import NoReturn

import streamlit as st

from lifecycle.service import LifecycleService
from service_access import ServiceNotRunning, get_service


def require_service() -> LifecycleService:
    """The running service; without one, say how to start the app and end this script run."""
    try:
        return get_service()
    except ServiceNotRunning as exc:
        _stop_with(str(exc))


def _stop_with(message: str) -> NoReturn:
    st.error(message, icon=":material/power_off:")
    st.stop()
