"""Hooks and fixtures for the end-to-end tests: each test's outcome is kept on its item, so a
tab can save what the browser showed when a test failed; one Chromium per module, one tab per
test over the module's own ``app`` fixture."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.app_process import RunningApp
from tests.e2e.browser_support import FAILED_KEY, VIEWPORT, chromium, user_tab

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed:
        item.stash[FAILED_KEY] = True
    return report


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, app: RunningApp, request: pytest.FixtureRequest) -> Iterator[Page]:
    with user_tab(browser, VIEWPORT, request, app.output) as tab:
        yield tab
