"""The UI under test: Home.py run by AppTest against a real lifecycle service on an isolated
database, catalog and log folder, with simulated model servers.

The service comes from the app's own lifespan (``tests.app_harness.serve``), which publishes it
where ``service_access.get_service`` finds it, exactly as in the running app; AppTest runs in the
same process, so the pages read that service.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

import service_access
from lifecycle.core.status_view import ModelStatus
from lifecycle.service import LifecycleService
from tests.app_harness import api_settings, serve
from tests.catalogs import write_catalog
from tests.support import REPO_ROOT, wait_until

HOME = REPO_ROOT / "Home.py"
RUN_TIMEOUT_S = 30
LOAD_TIMEOUT_S = 30


class _NavigationPagesManager(PagesManager):
    """AppTest resets ``PagesManager.uses_pages_directory`` before every run, and a ``pages/``
    folder next to Home.py then makes its second run execute the page file alone (Streamlit's
    old pages-folder mode) instead of Home.py's ``st.navigation``. The real server decides
    once per process and Home.py's ``st.navigation`` turns the old mode off; this subclass
    takes AppTest's reset on itself, so the shared flag keeps saying "navigation"."""


@contextlib.contextmanager
def navigation_mode() -> Iterator[None]:
    saved_flag, saved_class = PagesManager.uses_pages_directory, app_test_module.PagesManager
    PagesManager.uses_pages_directory = False
    app_test_module.PagesManager = _NavigationPagesManager  # type: ignore[misc]
    try:
        yield
    finally:
        app_test_module.PagesManager = saved_class  # type: ignore[misc]
        PagesManager.uses_pages_directory = saved_flag


@dataclass
class UiEnv:
    tmp_path: Path
    catalog: Path

    @property
    def service(self) -> LifecycleService:
        return service_access.get_service()

    def app(self, page: str | None = None, **state: Any) -> AppTest:
        """Home.py after its first run (on ``page``, e.g. "pages/history.py"), with ``state``
        put into session state before that run."""
        at = AppTest.from_file(str(HOME), default_timeout=RUN_TIMEOUT_S)
        for key, value in state.items():
            at.session_state[key] = value
        at.run()
        if page is not None:
            at.switch_page(page).run()
        return at

    def status(self, model_id: str) -> ModelStatus:
        return self.service.status_of(model_id)

    def load(self, model_id: str) -> ModelStatus:
        self.service.load(model_id, actor="test")
        status = self.service.wait(model_id, "ready", LOAD_TIMEOUT_S)
        assert status.loaded, status
        return status

    def event_types(self, model_id: str) -> list[str]:
        return [e.type for e in reversed(self.service.history(model_id, limit=100))]


@contextlib.contextmanager
def ui_env(tmp_path: Path, *models: dict[str, Any], **settings: Any) -> Iterator[UiEnv]:
    catalog = write_catalog(tmp_path / "models.yaml", *models)
    with navigation_mode(), serve(api_settings(tmp_path, catalog, **settings)):
        yield UiEnv(tmp_path, catalog)


_ESCAPE = re.compile(r"\\(.)")


def plain(markdown: str) -> str:
    """Markdown as read on screen: escapes dropped (the UI escapes names and reasons)."""
    return _ESCAPE.sub(r"\1", markdown)


def shown_text(at: AppTest) -> str:
    """Every text element of the last run, one per line, as read on screen."""
    kinds = ("markdown", "caption", "info", "warning", "error", "success", "text", "code")
    texts = [str(e.value) for kind in kinds for e in at.get(kind)]
    texts += [e.text for e in at.get("progress")]  # type: ignore[attr-defined]
    return "\n".join(plain(t) for t in texts)


def no_exception(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def requests_in_flight(url: str) -> int:
    """Chat requests a simulated llama.cpp server is answering right now (its /metrics gauge)."""
    text = httpx.get(f"{url}/metrics", timeout=2).text
    line = next(line for line in text.splitlines() if line.startswith("llamacpp:requests_processing"))
    return int(float(line.rsplit(" ", 1)[1]))


def wait_for_stream(url: str, timeout_s: float = 10) -> None:
    wait_until(lambda: requests_in_flight(url) > 0, timeout_s, what=f"a reply streaming from {url}")
