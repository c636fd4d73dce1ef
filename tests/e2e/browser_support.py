"""A real browser for the UI tests: Debian's Chromium driven by Playwright, never a downloaded one.

Without Chromium or the playwright package the tests skip and say why; with
``DXG_REQUIRE_BROWSER=1`` (CI) that is a failure instead.
"""

from __future__ import annotations

import colorsys
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from tests.support import REPO_ROOT, skip_or_fail

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

# Set by conftest.py's report hook when a test failed, so a tab can save what it showed.
FAILED_KEY: Final = pytest.StashKey[bool]()

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)
REQUIRE: Final = "DXG_REQUIRE_BROWSER"
VIEWPORT: Final = {"width": 1280, "height": 800}
_RGB: Final = re.compile(r"rgba?\((\d+),\s*(\d+),\s*(\d+)")


@contextmanager
def chromium() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        skip_or_fail(REQUIRE, f"the playwright package is not installed ({exc})")
    if not CHROMIUM.exists():
        skip_or_fail(REQUIRE, f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def colour_name(css: str) -> str:
    """The colour family of a CSS colour: Streamlit's theme picks the exact shades."""
    match = _RGB.search(css)
    if match is None:
        return f"unknown ({css})"
    r, g, b = (int(v) / 255 for v in match.groups())
    hue, _, saturation = colorsys.rgb_to_hls(r, g, b)
    degrees = hue * 360
    if saturation < 0.15:
        return "grey"
    if degrees < 15 or degrees >= 330:
        return "red"
    if degrees < 60:
        return "orange"
    if 75 <= degrees < 170:
        return "green"
    return f"other ({css})"


def chip(page: Page, model_id: str) -> Locator:
    # Streamlit renders a keyed button twice (one copy hidden for layout); the visible one counts.
    return page.locator(f".st-key-chip-{model_id} button:visible")


def dot_colour(page: Page, model_id: str) -> str:
    """The colour of the status dot on a model's chip, as drawn (the inline style, not :hover)."""
    dot = chip(page, model_id).locator("span.stMarkdownColoredText").first
    return colour_name(dot.get_attribute("style") or "")


def open_dialog(page: Page, model_id: str, timeout_s: float) -> Locator:
    """Click the model's chip until its dialog shows: on a busy machine a rerun that lands right
    after the click (a chip refresh, the first render after a page load) can swallow it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # only here when playwright is

    dialog = page.get_by_role("dialog")
    deadline = time.monotonic() + timeout_s
    while not dialog.is_visible():
        with contextlib.suppress(PlaywrightTimeout):  # covered by a redraw: try again
            chip(page, model_id).click(timeout=3000)
        try:
            dialog.wait_for(timeout=3000)
        except PlaywrightTimeout:
            if time.monotonic() >= deadline:
                raise
    return dialog


ARTIFACTS: Final = REPO_ROOT / "test-artifacts"
PAGE_TIMEOUT_MS: Final = 30_000


def shot(page: Page, name: str) -> Path:
    """A screenshot in test-artifacts/ (CI keeps them)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@contextmanager
def user_tab(
    browser: Browser, viewport: dict[str, int], request: pytest.FixtureRequest, app_output: Callable[[], str]
) -> Iterator[Page]:
    """A new user's tab (no cookies, no session); if the test failed, what the user saw and
    what the app said land next to the failure."""
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    tab = context.new_page()
    try:
        yield tab
        if request.node.stash.get(FAILED_KEY, False):
            shot(tab, f"failed-{request.node.name}")
            print(app_output()[-5000:])
    finally:
        context.close()
