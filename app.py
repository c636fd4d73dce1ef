"""The app process: the UI (Home.py) and the REST API (/api) on one port, one lifecycle service.

Start it with ``streamlit run app.py``: Streamlit finds ``app`` below and serves it with
uvicorn. Streamlit binds the socket from its own options before it imports this file, so
pass ``--server.address``/``--server.port`` when DXG_HOST/DXG_PORT differ from the defaults
in ``.streamlit/config.toml`` (127.0.0.1:8080); ``python app.py`` reads DXG_HOST/DXG_PORT
itself. The lifespan refuses to start when the two disagree, and on a non-loopback address
without DXG_API_TOKEN.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

import streamlit as st
from streamlit import config as streamlit_config

import lifespan
from app_routes import api_routes
from app_routes import middleware as app_middleware
from lifecycle.core.events import redact_text
from settings import get_settings

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_NAME: Final = "dxg"
# Libraries that log every request or job run at INFO; their warnings still show.
_CHATTY: Final = ("httpx", "httpcore", "apscheduler", "docker", "urllib3")
# Streamlit leaves server.address unset to mean every interface.
_ALL_INTERFACES: Final = "0.0.0.0"  # noqa: S104 - a name for what Streamlit does, not a choice


class RedactingFormatter(logging.Formatter):
    """Last line of defence: a secret that reaches a log record (a library echoing a header or
    an env line) is masked before it is written."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure_logging(level: int = logging.INFO) -> None:
    """One handler on the root logger for our modules and libraries; Streamlit and uvicorn keep
    their own. Safe to call again (hot reload, tests): it never adds a second handler."""
    root = logging.getLogger()
    if any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)


def streamlit_bind() -> tuple[str, int]:
    """Where Streamlit's server listens: read after it bound, so a port it picked is included."""
    address = streamlit_config.get_option("server.address") or _ALL_INTERFACES
    return str(address), int(streamlit_config.get_option("server.port"))


configure_logging()
settings = get_settings()

routes = api_routes(settings)
app = st.App(
    "Home.py",
    routes=routes,
    middleware=app_middleware(streamlit_bind()[0], settings, routes),
    lifespan=lifespan.lifespan(settings, streamlit_bind),
)

if __name__ == "__main__":
    app.run(config={"server.address": settings.host, "server.port": settings.port})
