"""The Benchmark page in a real browser: two simulated models of different speeds, one short
sweep on each, progress that moves, a throughput chart with a line per model, legible legends
over the TTFT chart's translucent bands, and a comparison that names the faster model.

The app runs as ``streamlit run app.py`` with its own catalog (as in test_browser.py) and
Debian's Chromium drives it. Screenshots land in test-artifacts/ (bench-running, bench-results,
bench-compare), plus one of what the browser showed when the test fails. The time from the Start
click to the first progress on screen goes to test-artifacts/bench-timings.json.

The form is filled as a user fills it: the models ticked first, the fields edited right after.
(A field edited within a second of a tick, which reruns the picker's fragment, used to snap back
to the preset in 2 tries of 5: the page wrote the preset radio, and a refresh the browser sent
before it saw that write undid it; ``ui.benchmark_page`` says how that is avoided now.)

The tab keeps watching while the runs finish. (When runs shared the app's process, a watched
page stalled the runner's event loop, lag p99 6-140 ms against the 5 ms limit, and the levels
were voided; each run now measures from a process of its own.) The charts' two lines are the
proof: a voided level never reaches them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from tests.catalogs import sim_process, write_catalog
from tests.e2e.app_process import AppFiles, RunningApp, start_app
from tests.e2e.browser_support import ARTIFACTS, VIEWPORT, chromium, shot, user_tab
from tests.support import free_port, kill_instance, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FAST, SLOW = "sim-fast", "sim-slow"
# 400 vs 100 tokens/s and 5 vs 40 ms to the first token: the fast model wins on every latency.
MODELS: Final = {FAST: ("400", "5"), SLOW: ("100", "40")}
# The form, cut down from Quick: three levels of 12 requests, short prompts, 128-token answers.
# sim-fast's first level lasts ~4 s and sim-slow's run ~25 s, so the live part (1 s refresh)
# is seen to move well before either run reaches its later levels.
LEVELS: Final = "1, 4, 8"
REQUESTS: Final = 12
INPUT_TOKENS: Final = 32
OUTPUT_TOKENS: Final = 128
WORKLOAD: Final = f"concurrency 1,4,8 x {REQUESTS} requests, isl {INPUT_TOKENS}, osl {OUTPUT_TOKENS}"
RUNS_DONE_S: Final = 150
# Tall enough that a screenshot holds the live part, the form, or a chart with its legend.
TALL: Final = {"width": VIEWPORT["width"], "height": 1600}
_DONE: Final = re.compile(r"(\d+)/(\d+) requests")
_FASTER: Final = re.compile(rf"^{FAST} is \d+% faster (to first token|between tokens|end to end) than {SLOW}")
TIMINGS: Final = ARTIFACTS / "bench-timings.json"
TTFT_TITLE: Final = "Time to first token (p50 band: 95% CI)"
# In the browser: when Start was clicked, when the live part first showed a run, when the first
# progress bar was drawn and when one first counted a finished request (performance.now(), ms),
# seen by a MutationObserver as the DOM changes.
_WATCH_PROGRESS: Final = """() => {
  const t = (window.__bench = {});
  document.addEventListener("click", (e) => {
    if (t.click === undefined && e.target.closest(".st-key-bench-start")) t.click = performance.now();
  }, true);
  new MutationObserver(() => {
    if (t.click === undefined) return;
    if (t.live === undefined && [...document.querySelectorAll('[data-testid="stMarkdownContainer"] strong')]
        .some((e) => e.textContent === "In progress")) t.live = performance.now();
    const bars = [...document.querySelectorAll('[data-testid="stProgress"]')];
    if (t.bar === undefined && bars.length) t.bar = performance.now();
    if (t.done === undefined && bars.some((b) => /(^|\\D)[1-9]\\d*\\/\\d+ requests/.test(b.innerText)))
      t.done = performance.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
}"""
# The opacity attributes of a chart's legend symbols, as Vega drew them in the SVG.
_LEGEND_OPACITIES: Final = """(chart) => [...chart.querySelectorAll(".role-legend-symbol path")].flatMap(
  (p) => ["opacity", "fill-opacity", "stroke-opacity"].map((a) => p.getAttribute(a)).filter((v) => v !== null)
)"""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[RunningApp]:
    models = [
        sim_process(model_id, free_port(), "--tokens-per-s", rate, "--ttft-ms", ttft)
        for model_id, (rate, ttft) in MODELS.items()
    ]
    files = AppFiles(
        root=tmp_path,
        instance=f"ui-bench-{uuid.uuid4().hex[:8]}",
        port=free_port(),
        catalog=write_catalog(tmp_path / "models.yaml", *models),
    )
    running = start_app(files)
    try:
        yield running
    finally:
        running.proc.terminate()  # the app stops its servers (and its runs) on SIGTERM
        try:
            running.proc.wait(timeout=20)
        finally:
            kill_instance(files.instance)
            running.client.close()


@pytest.fixture
def page(app: RunningApp, request: pytest.FixtureRequest) -> Iterator[Page]:
    with chromium() as browser, user_tab(browser, TALL, request, app.output) as tab:
        yield tab


def keyed(page: Page, key: str) -> Locator:
    """The element of the widget with session-state key ``key`` (Streamlit's st-key- class)."""
    return page.locator(f".st-key-{re.sub(r'[^a-zA-Z0-9_-]', '-', key)}")


def record_timings(figures: dict[str, Any]) -> None:
    """Add ``figures`` to test-artifacts/bench-timings.json (other tests may add theirs) and say them."""
    ARTIFACTS.mkdir(exist_ok=True)
    known = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    TIMINGS.write_text(json.dumps({**known, **figures}, indent=2) + "\n")
    print(f"bench timings: {json.dumps(figures)}")


def set_field(page: Page, key: str, value: str) -> None:
    """Type into a text or number field and commit it (Enter), as a user does."""
    from playwright.sync_api import expect

    field = keyed(page, key).locator("input")
    field.fill(value)
    field.press("Enter")
    expect(field).to_have_value(value)


def requests_done(page: Page) -> int:
    """Requests done across every progress bar on the page ("concurrency 1: 3/12 requests ...")."""
    texts = page.get_by_test_id("stProgress").all_inner_texts()
    return sum(int(m.group(1)) for text in texts if (m := _DONE.search(text)))


def pick(page: Page, key: str, option: str) -> None:
    """Choose the option containing ``option`` in the selectbox or multiselect keyed ``key``."""
    from playwright.sync_api import expect

    keyed(page, key).get_by_role("combobox").click()
    choice = page.get_by_role("option").filter(has_text=option)
    expect(choice).to_have_count(1)
    choice.click()


def chart(page: Page, title: str) -> Locator:
    """An Altair chart by its title (Streamlit draws Vega as SVG with ARIA labels)."""
    return page.get_by_test_id("stVegaLiteChart").filter(
        has=page.locator(f"[aria-roledescription='title'][aria-label=\"Title text '{title}'\"]")
    )


def stored_runs(app: RunningApp) -> list[dict[str, object]] | None:
    """The stored runs once none is queued or running; None while some still are."""
    listing = app.client.get("/api/benchmarks").json()
    return None if listing["active"] else listing["runs"]


@pytest.mark.timeout(300)
def test_benchmark_two_models_progress_results_and_compare(page: Page, app: RunningApp) -> None:
    from playwright.sync_api import expect

    for model_id in MODELS:
        app.load(model_id)

    # Run: the models first, then a short workload edited from Quick right after, as a user does.
    page.goto(f"{app.base_url}/benchmark")
    page.get_by_role("heading", name="Benchmark").wait_for()
    keyed(page, "bench:preset:quick").get_by_role("button").click()
    expect(keyed(page, "bench:levels").locator("input")).to_have_value("1, 4, 16")  # Quick filled it
    for model_id in MODELS:
        picker = keyed(page, f"bench:model:{model_id}")
        box = picker.get_by_role("checkbox")
        expect(box).to_be_enabled()  # loaded, so selectable
        picker.locator("label").click()  # the label covers Streamlit's hidden input
        expect(box).to_be_checked()
    edits = {
        "bench:levels": LEVELS,
        "bench:requests_per_level": str(REQUESTS),
        "bench:isl_mean": str(INPUT_TOKENS),
        "bench:osl_mean": str(OUTPUT_TOKENS),
    }
    for key, value in edits.items():
        set_field(page, key, value)
    # Any edit makes the form Custom, so the page always says what Start will run.
    page.get_by_text("Start runs a custom workload").wait_for()
    for key, value in edits.items():  # nothing snapped back to the preset meanwhile
        expect(keyed(page, key).locator("input")).to_have_value(value)
    page.evaluate(_WATCH_PROGRESS)
    keyed(page, "bench:start").get_by_role("button").click()
    for model_id in MODELS:
        page.get_by_text(re.compile(rf"{model_id}: run \w+ queued")).wait_for()

    # The live part redraws once a second: the bars fill as requests finish.
    page.get_by_text("In progress").wait_for()
    for model_id in MODELS:  # what runs is what the form said
        page.get_by_text(
            re.compile(rf"{model_id} (running|queued .*) · sweep: {re.escape(WORKLOAD)}")
        ).wait_for()
    page.wait_for_function("() => window.__bench.done !== undefined", timeout=RUNS_DONE_S * 1000)
    seen = page.evaluate("() => window.__bench")
    record_timings(
        {
            f"run_click_to_{moment}_s": round((seen[key] - seen["click"]) / 1000, 3)
            for moment, key in (
                ("run_shown_in_progress", "live"),
                ("first_progress_bar", "bar"),
                ("first_completed_request", "done"),
            )
        }
    )
    first = requests_done(page)
    wait_until(
        lambda: requests_done(page) > first,
        RUNS_DONE_S,
        interval_s=0.1,
        what=f"the progress bars to move past {first} requests",
    )
    page.get_by_text("In progress").scroll_into_view_if_needed()
    shot(page, "bench-running")

    # Watched while they finish: the page's live refreshes no longer touch the measurement.
    runs = wait_until(lambda: stored_runs(app), RUNS_DONE_S, interval_s=0.5, what="both runs to end")
    assert sorted(str(r["model_id"]) for r in runs) == sorted(MODELS), runs
    by_model = {str(r["model_id"]): str(r["run_id"]) for r in runs}

    # Results: a fresh visit shows the batch started (the page remembers it), so the throughput
    # chart has a line per model, and the TTFT chart's legend is as solid as its lines.
    page.goto(f"{app.base_url}/benchmark")
    page.get_by_role("tab", name="Results").click()
    shown = page.locator("[class*='st-key-bench-show-runs']")
    for run_id in by_model.values():
        expect(shown.get_by_text(run_id).first).to_be_visible()
    throughput = chart(page, "Output throughput")
    throughput.wait_for()  # a first look builds the charts (and loads Vega): the page's timeout, not 5 s
    legend = throughput.locator("[aria-roledescription='legend']")
    expect(legend).to_have_attribute("aria-label", re.compile(rf"with 2 values: {FAST}, {SLOW}$"))
    lines = throughput.locator("[aria-roledescription='line mark']")
    expect(lines).to_have_count(2)
    for model_id in MODELS:
        expect(lines.and_(page.locator(f"[aria-label*='model: {model_id};']"))).to_have_count(1)
    ttft = chart(page, TTFT_TITLE)
    ttft.locator("[aria-roledescription='legend']").first.wait_for()
    opacities = ttft.evaluate(_LEGEND_OPACITIES)
    assert opacities, "the TTFT chart's legend has no symbols"
    assert all(float(o) == 1 for o in opacities), opacities
    throughput.evaluate("e => e.scrollIntoView({block: 'center'})")
    shot(page, "bench-results")

    # Compare: A = the slow run, B = the fast one; the verdict names sim-fast as the faster.
    page.get_by_role("tab", name="Compare").click()
    pick(page, "bench:cmp:a", by_model[SLOW])
    pick(page, "bench:cmp:b", by_model[FAST])
    verdicts = page.get_by_test_id("stMarkdownContainer").locator("li:visible").filter(has_text=" than ")
    expect(verdicts.filter(has_text=_FASTER)).not_to_have_count(0)
    sentences = verdicts.all_inner_texts()
    assert any(_FASTER.search(s) for s in sentences), sentences
    assert not any(s.startswith(f"{SLOW} is") for s in sentences), sentences
    verdicts.first.scroll_into_view_if_needed()
    shot(page, "bench-compare")
