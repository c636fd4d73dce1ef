"""Fixtures the integration tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import Settings
from testbed.llama_server import find_llama_server
from tests.settings_support import isolated_settings
from tests.support import skip_or_fail

LLAMA_SERVER_GATE = "DXG_REQUIRE_LLAMA_SERVER"


@pytest.fixture
def second(tmp_path: Path) -> Settings:
    """A second app instance next to ``settings``: what must never see or touch the first's servers."""
    return isolated_settings(tmp_path / "second", "second")


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """The real llama-server; skipped with the reason when missing, failed under the gate."""
    lookup = find_llama_server()
    if lookup.path is None:
        skip_or_fail(LLAMA_SERVER_GATE, lookup.reason)
    assert lookup.path is not None
    return lookup.path
