"""Hooks for the end-to-end tests: each test's outcome is kept on its item, so fixtures can
save what the browser showed when a test failed."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

FAILED_KEY = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed:
        item.stash[FAILED_KEY] = True
    return report
