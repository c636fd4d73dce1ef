"""The benchmark page: presets and custom validation, Load and Start on real simulated models,
live progress and cancel, results, charts, exports and verdicts from hand-made stored runs,
the form and the shown runs surviving the browser's stale requests and a visit to another page,
finished runs read once, and the model dialog asking before it unloads a model that is being
benchmarked."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetStates
from streamlit.testing.v1 import AppTest

from benchmark.jobs import BenchmarkJobs
from benchmark.metrics import run_summary
from benchmark.presets import PRESETS
from benchmark.records import Channel, RequestRecord, RunRecord, RunStatus
from benchmark.workload import SweepWorkload
from db.benchmark_store import BenchmarkStore
from service_access import get_benchmarks
from tests.catalogs import sim_process
from tests.support import free_port, wait_until
from tests.ui.harness import no_exception, plain, shown_text, ui_env
from ui.benchmark_form import CUSTOM, PRESET_NOTES, build_workload, matching_preset, preset_values
from ui.benchmark_page import FORM_GEN_KEY, PRESET_KEY_PREFIX, SHOW_GEN_KEY, fkey, model_key, show_key
from ui.benchmark_tables import METRIC_HELP
from ui.benchmark_view import LruCache, RunFilters, run_progress, store_query
from ui.chips import DIALOG_KEY

pytestmark = pytest.mark.timeout(180)

BENCH = "pages/benchmark.py"
LAG = "event-loop lag p99 7.2 ms > 5 ms"
ELSEWHERE = "pages/history.py"
MS = 1_000_000


def benchmarks() -> tuple[BenchmarkJobs, BenchmarkStore]:
    return get_benchmarks()


def field(at: AppTest, name: str) -> str:
    """The key of a form field's widget now (a preset that changes the form makes fresh widgets)."""
    return fkey(name, at.session_state.get(FORM_GEN_KEY, 0))


def preset(at: AppTest, name: str) -> AppTest:
    return at.button(key=PRESET_KEY_PREFIX + name).click().run()


def preset_shown(at: AppTest) -> str:
    """Which preset the page says Start would run (CUSTOM for an edited form)."""
    text = shown_text(at)
    (name,) = [name for name, note in PRESET_NOTES.items() if note in text]
    return name


def run_picker(at: AppTest) -> Any:
    """The "Show runs" multiselect now (the page replaces it to change what it shows)."""
    return at.multiselect(key=show_key(at.session_state.get(SHOW_GEN_KEY, 0)))


def verdict_lines(at: AppTest) -> str:
    """The verdict sentences: the Compare tab's bulleted markdown."""
    compare_tab = at.tabs[2]
    return "\n".join(m.value for m in compare_tab.markdown if m.value.startswith("- "))


def column_with(at: AppTest, key: str) -> Any:
    """The form column holding the widget with ``key`` (its error, if any, sits under it)."""
    for column in at.columns:
        if any(w.key == key for kind in ("text_input", "number_input") for w in column.get(kind)):
            return column
    raise AssertionError(f"no column holds {key}")


# --- hand-made runs ----------------------------------------------------------------------------


def _request(level: int, seq: int, ttft_ms: float, gap_ms: float = 10.0, tokens: int = 8) -> RequestRecord:
    frames = [int((ttft_ms + k * gap_ms) * MS) for k in range(tokens)]
    return RequestRecord(
        level=level,
        seq=seq,
        intended_ns=seq * MS,
        sent_ns=seq * MS,
        requested_output_tokens=tokens,
        requested_prompt_tokens=128,
        headers_ns=int((ttft_ms - 1) * MS),
        frame_ns=frames,
        frame_bytes=[12] * tokens,
        frame_channel=[int(Channel.CONTENT)] * tokens,
        end_ns=frames[-1] + MS,
        prompt_tokens=128,
        completion_tokens=tokens,
        finish_reason="length",
        status=200,
    )


def hand_run(
    store: BenchmarkStore,
    run_id: str,
    model_id: str,
    ttft_base_ms: float,
    *,
    levels: tuple[int, ...] = (4,),
    invalid: str | None = None,
    running: bool = False,
) -> RunRecord:
    """A stored sweep whose TTFTs spread over ttft_base_ms .. +9 ms on every level; with
    ``invalid``, the last level is one the runner voided for that reason; ``running``, a run
    still going (no end yet)."""
    workload = SweepWorkload(concurrency=list(levels), requests_per_level=30).model_dump()
    requests = [_request(lvl, i, ttft_base_ms + i % 10) for lvl in range(len(levels)) for i in range(30)]
    health = [{"valid": True, "reason": None} for _ in levels]
    if invalid:
        health[-1] = {"valid": False, "reason": invalid}
    run = RunRecord(
        run_id=run_id,
        kind="sweep",
        base_url="http://127.0.0.1:1",
        workload=workload,
        started_at=time.time() - 60,
        model_id=model_id,
        engine="llamacpp",
        ended_at=None if running else time.time() - 30,
        status=RunStatus.RUNNING if running else RunStatus.INVALID if invalid else RunStatus.COMPLETE,
        health=health,
        requests=requests,
    )
    run.results = run_summary(run)
    store.create(run)
    return run


# --- tests -------------------------------------------------------------------------------------


def test_presets_fill_the_form_and_a_bad_field_says_so_and_starts_nothing(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        env.load("sim-a")
        at = no_exception(env.app(BENCH))
        assert preset_shown(at) == "quick"
        assert at.text_input(key=field(at, "levels")).value == "1, 4, 16"
        assert at.number_input(key=field(at, "requests_per_level")).value == 32

        no_exception(preset(at, "depth"))
        assert preset_shown(at) == "depth"
        assert at.radio(key=field(at, "kind")).value == "depth"
        assert at.text_input(key=field(at, "pp")).value == "2048"
        assert at.text_input(key=field(at, "tg")).value == "32"
        assert at.text_input(key=field(at, "depths")).value == "0, 4096, 8192, 16384"
        assert at.number_input(key=field(at, "runs")).value == 3

        preset(at, "quick")
        at.text_input(key=field(at, "levels")).set_value("0, 4").run()
        assert preset_shown(at) == CUSTOM  # an edit makes the form Custom
        at.checkbox(key=model_key("sim-a")).check().run()
        at.button(key="bench:start").click().run()
        no_exception(at)
        errors = [e.value for e in column_with(at, field(at, "levels")).error]
        assert errors == ["Input should be greater than or equal to 1 (got 0)"], errors
        assert not [e for e in column_with(at, field(at, "isl_mean")).error]
        jobs, store = benchmarks()
        assert not jobs.active()
        assert not store.list()

        at.number_input(key=field(at, "isl_mean")).set_value(0)
        at.text_input(key=field(at, "levels")).set_value("1").run()
        at.button(key="bench:start").click().run()
        assert [e.value for e in column_with(at, field(at, "isl_mean")).error] == [
            "Input should be greater than or equal to 1"
        ]
        assert not column_with(at, field(at, "levels")).error
        assert not jobs.active()


def sent(widget: Any) -> WidgetStates:
    """The request a browser sends right now: every widget's value as it shows them, this
    widget's edit included. (AppTest reads a widget's value from session state when it is asked,
    so a stale request has to be taken while it is still current; AppTest has no public way to
    send one later, hence ``_run``.)"""
    return widget.root.get_widget_states()


def test_a_request_the_browser_sent_before_the_page_answered_undoes_nothing(tmp_path: Path) -> None:
    """The form race. The browser sends every widget's value with every rerun request (the model
    picker's and the live part's timed refreshes too), so a request it sent before it received
    the page's answer to an edit carries the values it showed before. The preset radio, which
    an edit had set to Custom, came back as Quick that way, and its callback refilled the form
    with the preset over the user's edit (in a browser: 2 tries in 5 right after a model tick)."""
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        env.load("sim-a")
        at = no_exception(env.app(BENCH))
        at.checkbox(key=model_key("sim-a")).check().run()  # a tick, then an edit right after
        edit = sent(at.text_input(key=field(at, "levels")).set_value("1, 4, 8"))
        at._run(edit)
        at._run(edit)  # a timed refresh sent before the answer: the same values again
        no_exception(at)
        assert at.text_input(key=field(at, "levels")).value == "1, 4, 8"
        assert preset_shown(at) == CUSTOM

        # The other way round: a click on Depth, then a request the browser sent while it still
        # showed the sweep form, with one more edit in it.
        requests_field = at.number_input(key=field(at, "requests_per_level"))
        stale = sent(requests_field.set_value(12))
        requests_field.set_value(32)  # not yet edited when the click goes out
        preset(at, "depth")
        at._run(stale)
        no_exception(at)
        assert at.radio(key=field(at, "kind")).value == "depth"
        assert at.text_input(key=field(at, "pp")).value == "2048"
        assert preset_shown(at) == "depth"

        at.button(key="bench:start").click().run()  # what Start runs is what the form shows
        jobs, _ = benchmarks()
        (job,) = jobs.active("sim-a")
        assert job["kind"] == "depth", job
        jobs.cancel(str(job["run_id"]))
        wait_until(lambda: not jobs.active(), 30, what="the run to end")


def test_a_browser_that_took_in_the_form_late_still_shows_and_sends_its_values(tmp_path: Path) -> None:
    """Streamlit's own race: on a busy machine a click right after the page loaded can go out
    before the browser took in the form's widgets, so the request carries none of them, and the
    page's answer draws them again without their values (Streamlit marks a value to be shown
    only in the run that set it). The browser then shows, and sends back, each widget's default:
    that default has to be the form's value, not an empty field."""
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        at = no_exception(env.app(BENCH))
        at._run(WidgetStates())  # a request from a browser that holds no widget yet
        no_exception(at)
        quick = preset_values("quick")
        levels = at.text_input(key=field(at, "levels"))
        assert not levels.proto.set_value  # the value isn't sent: the default is what shows
        assert levels.proto.default == quick["levels"]
        assert at.number_input(key=field(at, "isl_mean")).proto.default == quick["isl_mean"]
        assert at.checkbox(key=field(at, "ignore_eos")).proto.default == quick["ignore_eos"]
        assert at.radio(key=field(at, "kind")).proto.default == 0  # sweep


def test_the_form_and_the_runs_shown_survive_a_visit_to_another_page_and_a_reload(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        _, store = benchmarks()
        for run_id in ("run-a", "run-b", "run-c"):
            hand_run(store, run_id, "sim-a", 50)
        at = no_exception(env.app(BENCH))
        assert run_picker(at).value == ["run-c"]  # the newest, on a first visit
        run_picker(at).set_value(["run-a", "run-b"]).run()
        at.text_input(key=field(at, "levels")).set_value("2, 8").run()

        at.switch_page(ELSEWHERE).run()  # Streamlit forgets the widgets a run doesn't draw
        at.switch_page(BENCH).run()
        no_exception(at)
        assert run_picker(at).value == ["run-a", "run-b"]
        assert at.text_input(key=field(at, "levels")).value == "2, 8"
        assert preset_shown(at) == CUSTOM

        # A reload is a new session: the app remembers the picks (one user works it), not the form.
        again = no_exception(env.app(BENCH))
        assert run_picker(again).value == ["run-a", "run-b"]
        assert preset_shown(again) == "quick"


def test_a_rerun_reads_a_finished_run_once_and_a_running_one_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        _, store = benchmarks()
        hand_run(store, "run-done", "sim-a", 50)
        live = hand_run(store, "run-live", "sim-a", 60, running=True)
        reads: list[str] = []
        read = store.get

        def counted(run_id: str, with_requests: bool = True) -> RunRecord | None:
            reads.append(run_id)
            return read(run_id, with_requests)

        monkeypatch.setattr(store, "get", counted)
        at = no_exception(env.app(BENCH))
        run_picker(at).set_value(["run-done", "run-live"]).run()
        assert reads == [], reads  # tables and curves come from the history's stored figures
        at.toggle(key="bench:per-request").set_value(True).run()  # these read the requests
        at.run()
        at.run()
        assert reads.count("run-done") == 1, reads
        assert reads.count("run-live") >= 3, reads  # its requests grow: read on every run

        store.finish(live.run_id, RunStatus.COMPLETE, time.time())
        reads.clear()
        at.run()
        at.run()
        assert reads == ["run-live"], reads  # read once more as the finished run, then kept


def test_load_start_progress_queue_and_cancel(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port(), "--tokens-per-s", "400")) as env:
        at = no_exception(env.app(BENCH))
        assert at.checkbox(key=model_key("sim-a", off=True)).disabled
        at.button(key="bench:load:sim-a").click().run()
        env.service.wait("sim-a", "ready", 30)
        at.run()
        assert not at.checkbox(key=model_key("sim-a")).disabled
        assert not [b for b in at.button if b.key == "bench:load:sim-a"]

        at.text_input(key=field(at, "levels")).set_value("2")
        at.number_input(key=field(at, "requests_per_level")).set_value(2000)
        at.number_input(key=field(at, "osl_mean")).set_value(64)
        at.checkbox(key=model_key("sim-a")).check()
        at.button(key="bench:start").click().run()
        at.button(key="bench:start").click().run()  # a second run on the same model queues
        no_exception(at)
        jobs, store = benchmarks()
        first, second = jobs.active("sim-a")
        assert "queued; it runs in the app" in shown_text(at)

        wait_until(lambda: (jobs.job(first["run_id"]) or {}).get("progress"), 30, what="progress")
        at.run()
        text = shown_text(no_exception(at))
        assert "**sim-a** running" in text
        assert "queued (#1 in sim-a's queue" in text
        bars = at.get("progress")
        assert bars, text
        assert "concurrency 2: " in bars[0].text
        assert "/2000 requests" in bars[0].text

        at.button(key=f"bench:cancel:{second['run_id']}").click().run()
        at.button(key=f"bench:cancel:{first['run_id']}").click().run()
        wait_until(lambda: not jobs.active(), 30, what="both runs to end")
        stored = store.get(first["run_id"], with_requests=False)
        assert stored is not None
        # Kept, cut short, partial: what it measured before the cancel is stored.
        assert (stored.status, stored.error) == (RunStatus.PARTIAL, "cancelled")
        assert 0 < sum(level["n"] for level in stored.results["levels"]) < 2000
        assert store.get(second["run_id"], with_requests=False) is None  # never started
        at.run()
        no_exception(at)
        assert not at.get("progress")
        assert run_picker(at).value == [first["run_id"]]  # the batch started shows (the queued one never ran)


def test_results_charts_exports_and_verdicts_from_stored_runs(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        _, store = benchmarks()
        slow = hand_run(store, "run-slow", "sim-a", 100, levels=(4, 8), invalid=LAG)
        fast = hand_run(store, "run-fast", "sim-b", 50)
        same = hand_run(store, "run-same", "sim-c", 100)
        at = no_exception(env.app(BENCH))
        assert list(at.dataframe[0].value["run"]) == ["run-same", "run-fast", "run-slow"]

        run_picker(at).set_value([slow.run_id, fast.run_id]).run()
        no_exception(at)
        tables = [d.value for d in at.dataframe[1:3]]
        assert list(tables[0]["level"]) == ["concurrency 4", "concurrency 8"]
        assert list(tables[0]["valid"]) == [True, False]
        assert tables[1]["TTFT p50 (ms)"].iloc[0] == pytest.approx(54.5, abs=1)
        column_help = json.loads(at.dataframe[1].proto.columns)
        assert column_help["TTFT p50 (ms)"]["help"] == METRIC_HELP["TTFT p50 (ms)"]
        # throughput, TTFT, ITL and trade-off, from the runs' stored figures alone
        assert len(at.get("vega_lite_chart")) == 4
        at.toggle(key="bench:per-request").set_value(True).run()
        # ... and, asked for, the TTFT histogram and the token gaps of one request
        assert len(no_exception(at).get("vega_lite_chart")) == 6
        text = shown_text(at)
        assert "Left out of the charts" in text
        assert f"sim-a concurrency 8: {LAG}" in text
        assert [b.label for b in at.get("download_button")][:2] == ["CSV", "JSON"]
        codes = [c.value for c in at.code]
        assert any(c.startswith("**sim-a**") and "| concurrency 4 |" in c for c in codes)

        at.selectbox(key="bench:gaps:run").set_value(fast.run_id).run()
        at.selectbox(key="bench:gaps:request").set_value(3).run()
        no_exception(at)

        at.selectbox(key="bench:cmp:a").set_value(slow.run_id)
        at.selectbox(key="bench:cmp:b").set_value(fast.run_id).run()
        text = verdict_lines(no_exception(at))
        assert json.loads(at.tabs[2].dataframe[0].proto.columns)["verdict"]["help"] == METRIC_HELP["verdict"]
        assert "sim-b is 48% faster to first token than sim-a at concurrency 4 (CI 46" in text, text
        assert "no significant difference in inter-token latency between sim-b and sim-a" in text

        at.selectbox(key="bench:cmp:b").set_value(same.run_id).run()
        text = verdict_lines(no_exception(at))
        assert (
            "no significant difference in time to first token between sim-c and sim-a at concurrency 4"
            in text
        )
        assert " is " not in verdict_lines(at)  # no sentence claims a winner

        at.selectbox(key="bench:f:status").set_value("invalid").run()
        assert list(no_exception(at).dataframe[0].value["run"]) == ["run-slow"]
        at.selectbox(key="bench:f:status").set_value("all")
        at.multiselect(key="bench:f:models").set_value(["sim-a", "sim-b"]).run()
        assert list(no_exception(at).dataframe[0].value["run"]) == ["run-fast", "run-slow"]
        today = dt.date.fromtimestamp(slow.started_at)  # the local day the filter means
        at.date_input(key="bench:f:days").set_value((today, today)).run()
        assert len(no_exception(at).dataframe[0].value) == 2
        tomorrow = today + dt.timedelta(days=1)
        at.date_input(key="bench:f:days").set_value((tomorrow, tomorrow)).run()
        assert "No runs match" in shown_text(no_exception(at))


def test_compare_leaves_out_a_level_a_run_voided_and_says_why(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        _, store = benchmarks()
        voided = hand_run(store, "run-voided", "sim-a", 100, levels=(4, 8), invalid=LAG)
        clean = hand_run(store, "run-clean", "sim-b", 50, levels=(4, 8))
        at = no_exception(env.app(BENCH))
        at.selectbox(key="bench:cmp:a").set_value(voided.run_id)
        at.selectbox(key="bench:cmp:b").set_value(clean.run_id).run()
        text = verdict_lines(no_exception(at))
        assert "sim-b is 48% faster to first token than sim-a at concurrency 4" in text, text
        assert "concurrency 8" not in text  # no verdict from a level that measured the client
        assert set(at.tabs[2].dataframe[0].value["level"]) == {"concurrency 4"}
        (left_out,) = [plain(m.value) for m in at.tabs[2].markdown if "Left out of the comparison" in m.value]
        assert f"- concurrency 8: sim-a's run voided it: {LAG}" in left_out.splitlines()


def test_unloading_a_model_being_benchmarked_asks_first(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port(), "--tokens-per-s", "400")) as env:
        env.load("sim-a")
        jobs, _ = benchmarks()
        long = SweepWorkload(concurrency=[2], requests_per_level=2000)
        job = jobs.submit("sim-a", long, actor="test")
        at = no_exception(env.app(**{DIALOG_KEY: "sim-a"}))
        at.button(key="dialog-unload").click().run()
        no_exception(at)
        assert "A benchmark is queued or running on this model" in shown_text(at)
        assert env.status("sim-a").desired == "loaded"

        at.button(key="dialog-unload-keep").click().run()
        assert "A benchmark is queued or running" not in shown_text(no_exception(at))
        assert env.status("sim-a").desired == "loaded"

        at.button(key="dialog-unload").click().run()
        at.button(key="dialog-unload-confirm").click().run()
        no_exception(at)
        assert env.status("sim-a").desired != "loaded"
        jobs.cancel(job.run_id)
        wait_until(lambda: not jobs.busy("sim-a"), 30, what="the run to end")


def test_start_without_a_picked_model_says_so_and_a_preset_clears_it(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        at = no_exception(env.app(BENCH))
        at.button(key="bench:start").click().run()
        assert "pick at least one loaded model" in shown_text(no_exception(at))
        assert not benchmarks()[0].active()
        preset(at, "depth")
        assert "pick at least one loaded model" not in shown_text(no_exception(at))


# --- the pure views under the page -------------------------------------------------------------


def test_the_form_builds_the_presets_and_names_the_field_of_each_error() -> None:
    assert build_workload(preset_values("quick")).workload == PRESETS["quick"]
    assert build_workload(preset_values("depth")).workload == PRESETS["depth"]
    sweep = {**preset_values("quick"), "levels": "1, 0", "osl_sd": -1.0, "timeout_s": 0.0}
    assert build_workload(sweep).errors == {
        "levels": "Input should be greater than or equal to 1 (got 0)",
        "osl_sd": "Input should be greater than or equal to 0",
        "timeout_s": "Input should be greater than 0",
    }
    neither = {**preset_values("quick"), "requests_per_level": None, "seconds_per_level": None}
    assert set(build_workload(neither).errors) == {"requests_per_level"}
    depth = {**preset_values("depth"), "tg": "32, x", "runs": 0}
    assert set(build_workload(depth).errors) == {"tg"}  # unparsable first; bounds after
    assert build_workload({**depth, "tg": "32"}).errors == {
        "runs": "Input should be greater than or equal to 1"
    }


def test_progress_lines_say_queue_place_counts_eta_and_ttft() -> None:
    view = {"run_id": "r1", "model_id": "m", "kind": "sweep", "workload": "concurrency 4", "state": "queued",
            "queue_position": 2, "progress": []}  # fmt: skip
    queued = run_progress(view)
    assert queued.queued
    assert "queued (#2 in m's queue" in queued.headline
    level = {"label": "concurrency 4", "done": 8, "total": 32, "errors": 1, "elapsed_s": 4.0, "eta_s": 12.0,
             "last_ttft_ms": 41.26}  # fmt: skip
    running = run_progress({**view, "state": "running", "queue_position": None, "progress": [level]})
    (line,) = running.levels
    assert line.fraction == 0.25
    assert line.text == "concurrency 4: 8/32 requests · 1 errors · ETA 0:12 · last TTFT 41.3 ms"
    timed = run_progress({**view, "state": "running", "progress": [{**level, "total": None, "eta_s": None}]})
    assert timed.levels[0].fraction is None
    assert "8 requests" in timed.levels[0].text


def test_history_filters_become_a_store_query() -> None:
    day = dt.date(2025, 3, 1)
    query = store_query(
        RunFilters(models=("a",), kind="depth", status="complete", first_day=day, last_day=day), 50
    )
    assert query["model_id"] == "a"
    assert (query["kind"], query["status"], query["limit"]) == ("depth", "complete", 50)
    assert query["until"] - query["since"] == pytest.approx(86_400, abs=3_600)  # one local day
    assert "model_id" not in store_query(RunFilters(models=("a", "b")), 50)  # filtered after


def test_the_preset_shown_is_judged_on_the_workload_the_form_builds() -> None:
    quick = preset_values("quick")
    assert matching_preset(quick) == "quick"
    assert matching_preset({**quick, "levels": "1,4,16"}) == "quick"  # same levels, other spelling
    assert matching_preset({**quick, "pp": "512"}) == "quick"  # the other kind's fields don't count
    assert matching_preset({**quick, "levels": "1, 4"}) == CUSTOM
    assert matching_preset({**quick, "levels": "x"}) == CUSTOM  # an invalid form is no preset
    assert matching_preset(preset_values("depth")) == "depth"


def test_the_cache_drops_the_least_recently_used_past_its_budget() -> None:
    cache: LruCache[int] = LruCache(max_entries=3, max_weight=10)
    made: list[int] = []

    def make(value: int) -> int:
        made.append(value)
        return value

    def weight(value: int) -> int:
        return value

    assert cache.get_or_make("a", lambda: make(4), weight) == 4
    assert cache.get_or_make("a", lambda: make(99), weight) == 4  # kept: not made again
    cache.get_or_make("b", lambda: make(5), weight)
    cache.get_or_make("a", lambda: make(99), weight)  # "a" used last, so "b" is the oldest now
    cache.get_or_make("c", lambda: make(3), weight)  # 12 > 10: "b" goes
    assert made == [4, 5, 3]
    cache.get_or_make("a", lambda: make(99), weight)
    cache.get_or_make("b", lambda: make(5), weight)  # made again
    assert made == [4, 5, 3, 5]
    assert cache.get_or_make("none", lambda: None) is None
    cache.clear()
    cache.get_or_make("huge", lambda: make(50), weight)  # alone over the budget, it still stays
    assert len(cache) == 1
    for key in "wxyz":
        cache.get_or_make(key, lambda: 0, weight)
    assert len(cache) == 3
    cache.clear(keep=lambda key: key == "z")
    assert len(cache) == 1
    assert cache.get_or_make("z", lambda: make(7), weight) == 0
