"""The UI in a real browser, as a new user meets it: the app runs as ``streamlit run app.py`` in its
own process with simulated models, and Debian's Chromium clicks through it.

Screenshots of the chips, the dialog and a chat land in test-artifacts/, and a failed test adds
one of what the browser showed. Timings a user feels (page open to chips, load click to green
dot, chip refreshes during a streamed reply) are written to test-artifacts/ui-timings.json;
only the load is held to a bound (the simulator's startup time + 3 s).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from simulator.tokens import expected_text
from tests.catalogs import sim_process, write_catalog
from tests.e2e.app_process import AppFiles, RunningApp, start_app
from tests.e2e.browser_support import (
    ARTIFACTS,
    PAGE_TIMEOUT_MS,
    VIEWPORT,
    chip,
    dot_colour,
    open_dialog,
    shot,
)
from tests.support import free_port, kill_instance, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STARTUP_S: Final = 1.5  # the simulated model's load time
STREAM_TOKENS: Final = 60
STREAM_RATE: Final = 10  # tokens/s: a 6 s reply, across six ticks of the chips' 1 s refresh
# A chip redraws on a 1 s refresh; after a streamed reply it must be right within this long.
CHIP_CATCH_UP_S: Final = 5.0
timings: dict[str, float] = {}


@contextmanager
def running_app(root: Path, *models: dict[str, Any], **env: str) -> Iterator[RunningApp]:
    """The app over ``models``, stopped (SIGTERM, then a kill of whatever a failed test left) after."""
    files = AppFiles(
        root=root,
        instance=f"ui-{uuid.uuid4().hex[:8]}",
        port=free_port(),
        catalog=write_catalog(root / "models.yaml", *models),
    )
    running = start_app(files, **env)
    try:
        yield running
    finally:
        # The app stops its servers on SIGTERM; anything a failed test left is killed.
        running.proc.terminate()
        try:
            running.proc.wait(timeout=20)
        finally:
            kill_instance(files.instance)
            running.client.close()


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """One app for the module's tests (a start costs seconds); ``app`` resets it before each test."""
    models = (
        sim_process("sim-p", free_port(), startup_s=STARTUP_S),
        sim_process("sim-stream", free_port(), "--tokens-per-s", str(STREAM_RATE)),
        sim_process("sim-other", free_port()),
    )
    with running_app(tmp_path_factory.mktemp("browser"), *models) as running:
        yield running
    save_timings(timings)


def save_timings(values: dict[str, Any]) -> None:
    """Add ``values`` to test-artifacts/ui-timings.json, keeping the keys other tests wrote."""
    path = ARTIFACTS / "ui-timings.json"
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    path.write_text(json.dumps({**saved, **values}, indent=2) + "\n")


@pytest.fixture
def app(shared_app: RunningApp) -> RunningApp:
    """The shared app with nothing loaded, whatever ran before: each test sets up what it asserts on."""
    shared_app.unload_all()
    return shared_app


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 3)


def set_max_tokens(page: Page, tokens: int) -> None:
    field = page.get_by_label("Max tokens")

    def opened() -> bool:
        # A rerun that lands just after the click (a chip refresh, a closed dialog) redraws the
        # popover closed on a busy machine: open it again until the field stays.
        if not field.is_visible():
            page.get_by_role("button", name="Settings").click()
        return field.is_visible()

    wait_until(opened, PAGE_TIMEOUT_MS / 1000, interval_s=0.5, what="the Settings popover")
    field.fill(str(tokens))
    field.press("Enter")
    page.keyboard.press("Escape")


def send(page: Page, text: str) -> Locator:
    """Type a chat message and send it; the assistant message it starts."""
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")
    return page.get_by_test_id("stChatMessage").filter(
        has=page.get_by_test_id("stChatMessageAvatarAssistant")
    )


def test_a_deep_link_on_a_fresh_server_still_gets_the_frame(browser: Browser, tmp_path: Path) -> None:
    # An app of its own, so this is the first page the new server renders whatever ran before:
    # a browser tab left on /history that reconnects after a restart. It must come up inside
    # Home.py's frame.
    with running_app(tmp_path, sim_process("sim-p", free_port())) as fresh:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            page = context.new_page()
            page.goto(f"{fresh.base_url}/history")
            chip(page, "sim-p").wait_for()
            page.get_by_role("heading", name="History").wait_for()
            assert page.get_by_role("link", name="Chat").is_visible()  # the top navigation, not a sidebar
        finally:
            context.close()


def test_a_new_user_loads_a_model_chats_and_unloads_it(page: Page, app: RunningApp) -> None:
    cursor = app.client.get("/api/events?limit=1").json()["cursor"]
    started = time.monotonic()
    page.goto(app.base_url)
    chip(page, "sim-p").wait_for()
    timings["page_open_to_chips_visible_s"] = elapsed(started)
    assert page.get_by_text("No models loaded yet: click a model below to load one.").is_visible()
    assert dot_colour(page, "sim-p") == "red"
    shot(page, "chips")

    dialog = open_dialog(page, "sim-p", PAGE_TIMEOUT_MS / 1000)
    dialog.get_by_text("Available (Not Loaded)").wait_for()
    assert dialog.get_by_text("simulated").is_visible()
    shot(page, "dialog")

    clicked = time.monotonic()
    dialog.get_by_role("button", name="🚀 Load Model").click()
    wait_until(lambda: dot_colour(page, "sim-p") == "green", STARTUP_S + 3, what="the green dot")
    timings["load_click_to_green_dot_s"] = elapsed(clicked)
    timings["simulated_startup_s"] = STARTUP_S
    dialog.get_by_text("Loaded & Ready").wait_for()
    shot(page, "dialog-loaded")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

    set_max_tokens(page, 40)
    reply = send(page, "Hello from the browser")
    sent = time.monotonic()
    reply.get_by_text("Simulated").first.wait_for()
    timings["chat_send_to_first_text_s"] = elapsed(sent)
    caption = reply.get_by_text("TTFT")
    caption.wait_for()
    timings["chat_send_to_metrics_caption_s"] = elapsed(sent)
    assert "output tokens (server usage)" in caption.inner_text()
    assert "tokens/s" in caption.inner_text()
    shot(page, "chat")

    dialog = open_dialog(page, "sim-p", PAGE_TIMEOUT_MS / 1000)
    clicked = time.monotonic()
    dialog.get_by_role("button", name="⏹️ Unload Model").click()
    wait_until(lambda: dot_colour(page, "sim-p") == "red", 15, what="the red dot")
    timings["unload_click_to_red_dot_s"] = elapsed(clicked)
    dialog.get_by_text("Available (Not Loaded)").wait_for()
    assert [
        e["actor"]
        for e in app.client.get(f"/api/events?model=sim-p&after={cursor}").json()["events"]
        if "Requested" in e["type"]
    ] == [
        "ui",
        "ui",
    ]


def test_chip_refreshes_never_cut_off_a_streaming_reply(page: Page, app: RunningApp) -> None:
    app.load("sim-stream")
    page.goto(app.base_url)
    chip(page, "sim-other").wait_for()
    page.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name="sim-stream").click()
    set_max_tokens(page, STREAM_TOKENS)

    reply = send(page, "A long answer, please")
    sent = time.monotonic()
    # Meanwhile another model loads: its chip is what a refresh would redraw.
    app.client.post("/api/models/sim-other/load")
    wait_until(lambda: app.model("sim-other")["loaded"], STREAM_TOKENS / STREAM_RATE, what="sim-other ready")
    assert not reply.get_by_text("TTFT").count(), "the reply ended before sim-other was ready: slow it down"
    reply.get_by_text("TTFT").wait_for(timeout=(STREAM_TOKENS / STREAM_RATE + 30) * 1000)
    finished = time.monotonic()
    # Streamlit runs one script at a time per session, so the footer cannot redraw while a reply
    # streams (README, "Using it"); the promise is that it catches up right after.
    wait_until(
        lambda: dot_colour(page, "sim-other") == "green", CHIP_CATCH_UP_S, what="sim-other's chip to catch up"
    )
    timings["stream_reply_duration_s"] = round(finished - sent, 3)
    timings["other_chip_green_after_stream_end_s"] = elapsed(finished)

    text = reply.get_by_test_id("stMarkdownContainer").first.inner_text()
    assert text.strip() == expected_text(STREAM_TOKENS)
    assert f"{STREAM_TOKENS} output tokens" in reply.get_by_text("TTFT").inner_text()
    shot(page, "chat-long-reply")


def test_with_a_token_the_ui_asks_for_it_once_then_works(browser: Browser, tmp_path: Path) -> None:
    token = "browser-token-" + "z" * 20
    with running_app(tmp_path, sim_process("sim-p", free_port()), DXG_API_TOKEN=token) as app:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            page = context.new_page()
            # A stranger sees no chips and has nothing to click but the way to sign in.
            page.goto(app.base_url)
            page.get_by_text("This app is protected by a token").first.wait_for()
            assert chip(page, "sim-p").count() == 0
            shot(page, "signed-out")
            page.get_by_role("link", name="Sign in").click()
            page.get_by_label("Token").fill("not-it")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("That is not the token.").wait_for()
            page.get_by_label("Token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            # Signed in: the chips, and a load that works.
            dialog = open_dialog(page, "sim-p", PAGE_TIMEOUT_MS / 1000)
            dialog.get_by_role("button", name="🚀 Load Model").click()
            wait_until(lambda: dot_colour(page, "sim-p") == "green", 20, what="the green dot")
            (cookie,) = [c for c in context.cookies() if c["name"] == "dxg_session"]
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Strict"
            assert 11 * 3600 < cookie["expires"] - time.time() <= 12 * 3600
            headers = {"Authorization": f"Bearer {token}"}
            loads = app.client.get("/api/events?model=sim-p", headers=headers).json()["events"]
            assert [e["actor"] for e in loads if e["type"] == "LoadRequested"] == ["ui"]
            # Signing out closes the door again.
            page.keyboard.press("Escape")
            page.get_by_role("link", name="Sign out").click()
            page.goto(app.base_url)
            page.get_by_text("This app is protected by a token").first.wait_for()
            assert chip(page, "sim-p").count() == 0
        finally:
            context.close()
