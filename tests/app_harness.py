"""The app's API and lifespan served in-process, wired exactly as app.py wires them.

Streamlit's runtime is a process-wide singleton, so only one ``st.App`` can start per test
process; these tests serve ``lifecycle.api.endpoints.routes`` with ``lifespan.lifespan`` from a plain
Starlette app instead, the same two pieces app.py hands to ``st.App``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient

import lifespan
from app_routes import api_routes
from app_routes import middleware as app_middleware
from settings import Settings
from tests.settings_support import FAST, isolated_settings


def api_settings(tmp_path: Path, catalog: Path, **overrides: Any) -> Settings:
    """An isolated instance with the tests' short figures and no restart after a crash, so a failed
    start ends a wait at once. Not migrated: the app's lifespan does that, and some tests check
    that nothing is written before it accepts its address."""
    update = {"catalog": catalog, **FAST, "crash_limit": 1, **overrides}
    return isolated_settings(tmp_path).model_copy(update=update)


@contextmanager
def serve(settings: Settings, bind: tuple[str, int] = ("127.0.0.1", 8080)) -> Iterator[TestClient]:
    """The API under its lifespan, started and stopped with the test client; ``bind`` stands in
    for the address the HTTP server would report."""
    routes = api_routes(settings)
    app = Starlette(
        routes=routes,
        middleware=app_middleware(bind[0], settings, routes),
        lifespan=lifespan.lifespan(settings, lambda: bind),
    )
    # The Host a browser on this machine sends: the app answers to loopback names only.
    with TestClient(app, base_url=f"http://127.0.0.1:{bind[1]}") as client:
        yield client
