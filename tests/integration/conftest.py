"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db.benchmark_store import BenchmarkStore
from db.migrate import upgrade_to_head
from db.session import make_engine
from settings import Settings
from testbed.llama_server import find_llama_server
from tests.settings_support import isolated_settings
from tests.support import skip_or_fail

LLAMA_SERVER_GATE = "DXG_REQUIRE_LLAMA_SERVER"


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """The test's own database, migrated to head; disposed after the test."""
    upgrade_to_head(settings.db_url)
    engine = make_engine(settings.db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def benchmark_store(engine: Engine) -> BenchmarkStore:
    return BenchmarkStore(engine)


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
