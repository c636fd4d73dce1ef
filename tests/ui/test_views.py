"""The UI's pure view logic: formatting, load statistics, the audit table, chat texts and the
dialog's decisions. No Streamlit run here; the page tests check the same things on screen."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest

from inference import (
    ChatResult,
    InferenceError,
    ModelNotReady,
    RequestTimedOut,
    ServerUnreachable,
    StreamInterrupted,
)
from lifecycle.core.admission import Budget, Holder, MemoryView
from lifecycle.core.events import (
    AppStarted,
    BenchmarkFinished,
    BenchmarkStarted,
    Crashed,
    Event,
    LoadRequested,
    ReadyObserved,
    RecordedEvent,
    StartFailed,
    UnloadRequested,
)
from lifecycle.core.status_view import ModelStatus
from ui.chat_view import Conversation, Turn, conversation, error_text, metrics_caption, request_messages
from ui.chips import chip_caption
from ui.dialog_view import Action, dialog_view, memory_text
from ui.format import dot_md, duration, escape_md, size_label
from ui.history_view import details, event_rows, filter_rows, to_csv
from ui.stats import load_stats, percentile

# --- format ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dot", "md"), [("green", ":green[●]"), ("orange", ":orange[●]"), ("blue", ":red[●]")]
)
def test_dots_are_coloured_markdown_and_unknown_colours_read_as_not_ready(dot: str, md: str) -> None:
    assert dot_md(dot) == md


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("GPT-OSS-20B (MXFP4)", "GPT-OSS-20B (MXFP4)"),  # ordinary names stay readable
        (":red[boom] *x* `y`", r"\:red\[boom\] \*x\* \`y\`"),
        ("- not a list\n1. nor this\n# nor a heading", "\\- not a list\n1\\. nor this\n\\# nor a heading"),
        ("/data/my_model_q4.gguf", r"/data/my\_model\_q4.gguf"),
    ],
)
def test_escape_md_shows_user_text_literally(text: str, escaped: str) -> None:
    assert escape_md(text) == escaped


def test_durations_and_sizes() -> None:
    assert duration(None) == "—"
    assert duration(0.2134) == "0.21 s"
    assert duration(71) == "1:11"
    assert size_label("20B", "GGUF") == "20B · GGUF"
    assert size_label(None) == "size n/a"


# --- stats -------------------------------------------------------------------------------------


def test_percentile_interpolates_like_a_spreadsheet() -> None:
    values = [10.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 90) == pytest.approx(7.6)  # 4 + 0.6 * (10 - 4)
    assert percentile([5.0], 90) == 5.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="0-100"):
        percentile(values, 101)


def recorded(
    position: int, event: Event, model: str | None = "m", actor: str = "ui", ts: float = 0.0
) -> RecordedEvent:
    stream = f"model:{model}" if model else "app"
    return RecordedEvent(position, stream, position, event, actor, ts or 1_700_000_000.0 + position)


def test_load_stats_per_model() -> None:
    events = [
        recorded(1, AppStarted(instance="i"), model=None),
        recorded(2, ReadyObserved(load_duration_s=10.0)),
        recorded(3, ReadyObserved(load_duration_s=20.0)),
        recorded(4, ReadyObserved(load_duration_s=40.0)),
        recorded(5, Crashed(exit_code=137, oom=True)),
        recorded(6, StartFailed(reason="timeout")),
        recorded(7, LoadRequested(), model="other"),
    ]
    stats = {s.model: s for s in load_stats(events)}
    assert set(stats) == {"m", "other"}
    m = stats["m"]
    assert (m.loads, m.p50_s, m.p90_s, m.crashes, m.failed_starts) == (3, 20.0, 36.0, 1, 1)
    assert stats["other"].loads == 0
    assert stats["other"].p50_s is None


# --- history table -------------------------------------------------------------------------------


def test_details_read_as_a_sentence_and_hide_logs_and_secrets() -> None:
    text = details(
        {"exit_code": 137, "oom": True, "log_tail": "x" * 500, "reason": "NGC_API_KEY=nvapi-abcdefgh123"}
    )
    assert text == "exit code 137, out of memory, reason: NGC_API_KEY=***"
    assert details(ReadyObserved(load_duration_s=12.345).payload()) == "took 12.35 s"
    assert details({"new_field": 1}) == "new_field: 1"  # events from a newer version still show
    started = BenchmarkStarted(run_id="3f9a", kind="sweep", workload="concurrency 1,8 x 32 requests")
    assert details(started.payload()) == "run 3f9a, sweep, concurrency 1,8 x 32 requests"
    finished = BenchmarkFinished(run_id="3f9a", status="partial", summary="2 levels, 40 requests completed")
    assert details(finished.payload()) == "run 3f9a, status partial, 2 levels, 40 requests completed"


def test_rows_are_newest_first_and_filter_by_model_and_event() -> None:
    events = [
        recorded(1, LoadRequested(), actor="ui"),
        recorded(2, ReadyObserved(load_duration_s=1.0), actor="reconciler"),
        recorded(3, UnloadRequested(reason="user"), model="n", actor="api"),
        recorded(4, AppStarted(instance="i"), model=None, actor="app"),
    ]
    rows = event_rows(events)
    assert [r.position for r in rows] == [4, 3, 2, 1]
    assert rows[0].model == "app"
    assert [r.position for r in filter_rows(rows, models={"m"})] == [2, 1]
    assert [r.position for r in filter_rows(rows, events={"LoadRequested", "UnloadRequested"})] == [3, 1]
    assert [r.position for r in filter_rows(rows, {"m"}, {"UnloadRequested"})] == []
    assert filter_rows(rows) == rows


def test_csv_has_a_header_the_rows_and_no_formulas() -> None:
    rows = event_rows(
        [recorded(1, LoadRequested(), actor="=HYPERLINK(1)"), recorded(2, Crashed(exit_code=1))]
    )
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [r["position"] for r in parsed] == ["2", "1"]
    assert parsed[0]["details"] == "exit code 1"
    assert parsed[1]["actor"] == "'=HYPERLINK(1)"
    assert list(parsed[0]) == ["position", "time", "model", "event", "actor", "details"]


# --- chat ----------------------------------------------------------------------------------------


def result(**overrides: object) -> ChatResult:
    values: dict = {
        "text": "hi there",
        "started_at": 100.0,
        "sent_at": 100.0,
        "token_times": (100.25, 100.35, 100.45),
        "ended_at": 100.5,
        "output_tokens": 3,
        "tokens_from_usage": True,
    }
    return ChatResult(**{**values, **overrides})


def test_metrics_caption_says_where_the_token_count_came_from() -> None:
    assert metrics_caption(result()) == "TTFT 0.25 s · 3 output tokens (server usage) · 10.0 tokens/s"
    counted = metrics_caption(result(tokens_from_usage=False))
    assert "3 output tokens (counted chunks, no usage from the server)" in counted
    assert metrics_caption(result(token_times=(100.25,), output_tokens=1)).endswith("tokens/s n/a")


def test_request_messages_skip_failed_replies_and_start_with_the_system_prompt() -> None:
    turns = [
        Turn("user", "one"),
        Turn("assistant", "half", error="cut off"),
        Turn("user", "two"),
        Turn("assistant", "answer"),
    ]
    messages = request_messages("  Be brief. ", turns, "three")
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "three"},
    ]
    assert request_messages("", [], "q") == [{"role": "user", "content": "q"}]


def test_each_model_keeps_its_own_conversation() -> None:
    state: dict[str, object] = {}
    conversation(state, "a").add(Turn("user", "hello a"))
    assert conversation(state, "b").turns == []
    assert conversation(state, "a").turns == [Turn("user", "hello a")]
    conversation(state, "a").clear()
    assert conversation(state, "a") == Conversation()


@pytest.mark.parametrize(
    ("error", "lead"),
    [
        (ServerUnreachable("refused", "u"), "does not answer"),
        (RequestTimedOut("slow", "u"), "took too long"),
        (StreamInterrupted("cut", "u"), "stopped before it was complete"),
        (ModelNotReady("503", "u", 503, "loading"), "is not ready yet"),
        (InferenceError("odd", "u"), "failed"),
    ],
)
def test_error_texts_lead_with_what_happened_and_keep_the_details(error: InferenceError, lead: str) -> None:
    text = error_text(error, "Sim A")
    assert lead in text
    assert text.endswith(str(error))


# --- dialog decisions ----------------------------------------------------------------------------

BASE = ModelStatus(
    id="m", name="M", url="http://127.0.0.1:9", served_model="m", engine="llamacpp", runtime="process",
    size="7B", format="GGUF", supports_tools=True, simulated=True, loaded=False, available=True,
    can_load=True, phase="stopped", desired="unloaded", since=None, restarts=0, last_error=None,
    status="Available (Not Loaded)", dot="red", reason=None, usual_load_s=None, manual_start=None,
)  # fmt: skip


def test_available_model_offers_load_and_shows_its_facts() -> None:
    view = dialog_view(BASE, now=0)
    assert view.headline == "Available (Not Loaded)"
    assert view.actions == (Action.LOAD,)
    assert view.load_blocked is None
    assert dict(view.facts)["Tools"] == "yes"
    assert dict(view.facts)["Host"] == "this machine"
    assert view.simulated


def test_a_model_on_another_node_names_it_in_the_dialog_and_under_its_chip() -> None:
    on_node = replace(BASE, host="spark-2", size="20B")
    assert dict(dialog_view(on_node, now=0).facts)["Host"] == "spark-2"
    assert chip_caption(on_node) == "20B · on spark-2"
    assert chip_caption(replace(BASE, size="20B")) == "20B"


def test_loading_model_shows_elapsed_and_usual_time_and_offers_unload() -> None:
    loading = replace(
        BASE,
        phase="starting",
        desired="loaded",
        since=100.0,
        usual_load_s=70.0,
        status="Loading… 0:42",
        dot="orange",
    )
    view = dialog_view(loading, now=142.0)
    assert view.headline == "Loading…"
    assert view.actions == (Action.UNLOAD,)
    assert view.loading is not None
    assert view.loading.text == "0:42 elapsed · usually takes 1:10"
    assert view.loading.progress == pytest.approx(0.6)
    # No past loads: no guess; queued (not started yet): no elapsed time.
    first = dialog_view(replace(loading, phase="stopped", usual_load_s=None), now=142.0)
    assert first.loading is not None
    assert first.loading.text == "Waiting to start"
    assert first.loading.progress is None


def test_offline_and_failed_always_say_why() -> None:
    offline = replace(BASE, available=False, status="Offline: file missing", reason="file missing")
    view = dialog_view(offline, now=0)
    assert (view.headline, view.reason, view.load_blocked) == ("Offline", "file missing", "file missing")
    failed = replace(
        BASE, phase="failed", desired="loaded", status="Failed: boom", reason="boom", last_error="boom"
    )
    view = dialog_view(failed, now=0)
    assert (view.headline, view.reason, view.actions, view.failed) == (
        "Failed",
        "boom",
        (Action.RETRY,),
        True,
    )
    restarting = replace(
        BASE,
        phase="backoff",
        desired="loaded",
        status="Restarting… (exit 1)",
        last_error="exit 1",
        dot="orange",
    )
    view = dialog_view(restarting, now=0)
    assert (view.headline, view.restart_error, view.actions) == ("Restarting…", "exit 1", (Action.UNLOAD,))


def test_external_model_shows_how_to_start_it_and_offers_nothing() -> None:
    external = replace(
        BASE, runtime="external", can_load=False, available=False, manual_start="Run ./go.sh",
        status="Offline: not answering", reason="not answering",
    )  # fmt: skip
    view = dialog_view(external, now=0)
    assert view.actions == ()
    assert view.manual_start == "Run ./go.sh"
    assert view.reason == "not answering"


def test_unloading_model_offers_nothing_until_it_is_gone() -> None:
    unloading = replace(BASE, phase="stopping", desired="unloaded", status="Unloading…", dot="orange")
    assert dialog_view(unloading, now=0).actions == ()
    ready = replace(BASE, phase="ready", desired="loaded", loaded=True, status="Loaded & Ready", dot="green")
    assert dialog_view(ready, now=0).actions == (Action.UNLOAD,)


def test_the_dialog_states_memory_and_idle_unload() -> None:
    facts = dict(dialog_view(replace(BASE, memory_gb=16.0, idle_unload_s=600.0), now=0).facts)
    assert (facts["Memory"], facts["Idle"]) == ("16 GB", "unloads after 10 min idle")
    plain = dict(dialog_view(BASE, now=0).facts)
    assert (plain["Memory"], plain["Idle"]) == ("not given (not checked)", "stays loaded")
    budget = Budget(128.0, measured=False, source="budget 128 GB, DXG_MEMORY_BUDGET_GB")
    held = MemoryView(budget, (Holder("gpt-oss-20b", 16.0, ready=True, busy=False, idle_since=0.0),))
    assert memory_text(held) == (
        "Memory: 112 GB free (budget 128 GB, DXG_MEMORY_BUDGET_GB); held: gpt-oss-20b 16 GB"
    )
    assert memory_text(MemoryView(budget, ())).endswith("held: nothing")
    assert memory_text(None, "spark-2") == (
        "Memory: no budget is known on spark-2, so loads there are unchecked: set DXG_MEMORY_BUDGET_GB"
    )
