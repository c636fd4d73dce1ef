"""Fixtures the integration tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import Settings
from tests.settings_support import isolated_settings


@pytest.fixture
def second(tmp_path: Path) -> Settings:
    """A second app instance next to ``settings``: what must never see or touch the first's servers."""
    return isolated_settings(tmp_path / "second", "second")
