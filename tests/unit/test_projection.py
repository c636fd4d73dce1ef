"""The pure core: the projection fold for every event type, event serialisation, redaction, status words."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from lifecycle.core.events import (
    Adopted,
    AppStarted,
    AppStopped,
    BenchmarkFinished,
    BenchmarkStarted,
    Crashed,
    Event,
    GaveUp,
    InvalidStream,
    LoadRequested,
    ReadyObserved,
    RecordedEvent,
    RestartScheduled,
    StartFailed,
    StartIssued,
    StopIssued,
    Stopped,
    Unhealthy,
    UnknownEvent,
    UnloadRequested,
    check_stream,
    event_types,
    from_record,
    model_stream,
    redact,
    redact_text,
    to_record,
)
from lifecycle.core.projection import ModelState, apply, fold
from lifecycle.core.states import (
    LOADED,
    UNLOADED,
    Desired,
    Dot,
    IllegalTransition,
    Phase,
    check_transition,
    is_allowed,
    status,
)

HANDLE = {"kind": "process", "pid": 4242}


def recorded(events: list[Event], model_id: str = "m1", t0: float = 1000.0) -> list[RecordedEvent]:
    """Events as the store would record them: versions 1.., one second apart."""
    stream = model_stream(model_id)
    return [RecordedEvent(i, stream, i, e, "test", t0 + i) for i, e in enumerate(events, start=1)]


def state_after(*events: Event) -> ModelState:
    state = fold(recorded(list(events)))
    assert state is not None
    return state


def in_phase(phase: Phase, **changes: Any) -> ModelState:
    return replace(ModelState(model_id="m1", phase=phase, since=1.0, version=7), **changes)


def step(state: ModelState, event: Event, ts: float = 5000.0) -> ModelState:
    return apply(state, RecordedEvent(99, "model:m1", state.version + 1, event, "test", ts))


# --- the fold, event by event ------------------------------------------------------


def test_fold_of_nothing_is_none() -> None:
    assert fold([]) is None


def test_first_event_creates_the_state_of_its_stream() -> None:
    state = state_after(LoadRequested())
    assert state == ModelState(model_id="m1", desired=LOADED, phase=Phase.STOPPED, since=1001.0, version=1)


def test_load_requested_sets_desired_and_keeps_phase() -> None:
    state = step(in_phase(Phase.READY, desired=UNLOADED), LoadRequested())
    assert (state.desired, state.phase, state.since) == (LOADED, Phase.READY, 1.0)


def test_load_requested_resets_restarts_only_on_a_fresh_load() -> None:
    repeated = step(in_phase(Phase.BACKOFF, desired=LOADED, restarts=3), LoadRequested())
    assert repeated.restarts == 3  # a second click while loading changes nothing
    fresh = step(in_phase(Phase.STOPPED, desired=UNLOADED, restarts=3), LoadRequested())
    assert fresh.restarts == 0


def test_load_requested_leaves_failed_so_the_reconciler_tries_again() -> None:
    state = step(in_phase(Phase.FAILED, desired=LOADED, restarts=5, last_error="boom"), LoadRequested())
    assert (state.phase, state.restarts, state.last_error, state.since) == (Phase.STOPPED, 0, "boom", 5000.0)


@pytest.mark.parametrize("phase", [Phase.STARTING, Phase.READY, Phase.STOPPING, Phase.STOPPED])
def test_unload_requested_keeps_a_running_phase(phase: Phase) -> None:
    state = step(in_phase(phase, desired=LOADED), UnloadRequested(reason="shutdown"))
    assert (state.desired, state.phase) == (UNLOADED, phase)


@pytest.mark.parametrize("phase", [Phase.CRASHED, Phase.BACKOFF, Phase.FAILED])
def test_unload_requested_settles_idle_phases_to_stopped(phase: Phase) -> None:
    state = step(in_phase(phase, desired=LOADED), UnloadRequested())
    assert (state.desired, state.phase, state.since) == (UNLOADED, Phase.STOPPED, 5000.0)


def test_start_issued_records_handle_and_start_time() -> None:
    state = state_after(LoadRequested(), StartIssued(handle=HANDLE, attempt=1))
    assert (state.phase, state.handle, state.since, state.version) == (Phase.STARTING, HANDLE, 1002.0, 2)


def test_ready_observed_clears_the_last_error() -> None:
    state = step(in_phase(Phase.STARTING, last_error="old crash"), ReadyObserved(load_duration_s=12.5))
    assert (state.phase, state.last_error) == (Phase.READY, None)


def test_start_failed_records_reason_exit_code_and_last_log_line() -> None:
    event = StartFailed(
        reason="exited before ready", exit_code=2, log_tail="loading\nmodel file not found\n\n"
    )
    state = step(in_phase(Phase.STARTING, handle=HANDLE), event)
    assert state.phase == Phase.CRASHED
    assert state.handle is None
    assert state.last_error == "exited before ready: exited with code 2: model file not found"


def test_start_failed_without_exit_code_or_log() -> None:
    state = step(in_phase(Phase.STARTING), StartFailed(reason="startup timeout after 1800 s"))
    assert state.last_error == "startup timeout after 1800 s"


def test_crashed_records_exit_code_oom_and_last_log_line() -> None:
    state = step(
        in_phase(Phase.READY, handle=HANDLE), Crashed(exit_code=137, oom=True, log_tail="CUDA OOM\n")
    )
    assert (state.phase, state.handle) == (Phase.CRASHED, None)
    assert state.last_error == "exited with code 137 (out of memory): CUDA OOM"


def test_crashed_with_unknown_exit_code() -> None:
    assert step(in_phase(Phase.READY), Crashed()).last_error == "exited"


def test_restart_scheduled_counts_restarts() -> None:
    state = step(in_phase(Phase.CRASHED, restarts=1), RestartScheduled(delay_s=4.0, attempt=2, at=5004.0))
    assert (state.phase, state.restarts) == (Phase.BACKOFF, 2)


def test_gave_up_fails_with_reason_and_keeps_the_cause() -> None:
    state = step(in_phase(Phase.CRASHED, last_error="exited with code 1"), GaveUp("5 crashes in 10 min", 5))
    assert state.phase == Phase.FAILED
    assert state.last_error == "5 crashes in 10 min; last: exited with code 1"
    assert step(in_phase(Phase.BACKOFF), GaveUp("", 5)).last_error == "gave up after 5 crashes"


def test_stop_issued_and_stopped() -> None:
    stopping = step(in_phase(Phase.READY, handle=HANDLE, desired=UNLOADED), StopIssued())
    assert (stopping.phase, stopping.handle) == (Phase.STOPPING, HANDLE)
    stopped = step(stopping, Stopped(reason="unload", exit_code=0), ts=6000.0)
    assert (stopped.phase, stopped.handle, stopped.since) == (Phase.STOPPED, None, 6000.0)


@pytest.mark.parametrize(("ready", "phase"), [(True, Phase.READY), (False, Phase.STARTING)])
def test_adopted_takes_over_the_handle(ready: bool, phase: Phase) -> None:
    state = step(in_phase(Phase.STOPPED), Adopted(handle=HANDLE, ready=ready))
    assert (state.phase, state.handle) == (phase, HANDLE)


@pytest.mark.parametrize(
    "event", [AppStarted(instance="i1", pid=1), AppStopped(), UnknownEvent("Future", {})]
)
def test_events_without_model_meaning_only_advance_the_version(event: Event) -> None:
    before = in_phase(Phase.READY, handle=HANDLE, restarts=2, last_error="x")
    assert step(before, event) == replace(before, version=8)


def test_since_moves_only_when_the_phase_changes() -> None:
    state = state_after(LoadRequested(), StartIssued(handle=HANDLE), UnloadRequested(), LoadRequested())
    assert (state.phase, state.since, state.version) == (Phase.STARTING, 1002.0, 4)


def test_apply_refuses_events_of_other_streams() -> None:
    app_event = RecordedEvent(1, "app", 1, AppStarted(), "app", 1.0)
    with pytest.raises(ValueError, match="'app'"):
        apply(None, app_event)
    other = RecordedEvent(1, "model:m2", 1, LoadRequested(), "test", 1.0)
    with pytest.raises(ValueError, match="model 'm1'"):
        apply(ModelState(model_id="m1"), other)


def test_fold_continues_from_a_given_state() -> None:
    events = recorded([LoadRequested(), StartIssued(handle=HANDLE), ReadyObserved(3.0)])
    assert fold(events[1:], fold(events[:1])) == fold(events)


# --- the fold agrees with the transition table -----------------------------------------

CRASH = Crashed(exit_code=1, log_tail="boom")
LIFECYCLES: dict[str, list[Event]] = {
    "load, ready, unload": [
        LoadRequested(),
        StartIssued(handle=HANDLE),
        ReadyObserved(5.0),
        UnloadRequested(),
        StopIssued(),
        Stopped(exit_code=0),
    ],
    "crash, backoff, restart": [
        LoadRequested(),
        StartIssued(handle=HANDLE),
        ReadyObserved(5.0),
        CRASH,
        RestartScheduled(2.0, 1, 10.0),
        StartIssued(handle=HANDLE, attempt=2),
        ReadyObserved(5.0),
    ],
    "start fails until giving up, then the user loads again": [
        LoadRequested(),
        StartIssued(handle=HANDLE),
        StartFailed(reason="exited before ready", exit_code=1),
        RestartScheduled(2.0, 1, 10.0),
        StartIssued(handle=HANDLE, attempt=2),
        StartFailed(reason="exited before ready", exit_code=1),
        GaveUp("5 crashes in 10 min", 5),
        LoadRequested(),
        StartIssued(handle=HANDLE),
        ReadyObserved(5.0),
    ],
    "unload while starting": [
        LoadRequested(),
        StartIssued(handle=HANDLE),
        UnloadRequested(),
        StopIssued(),
        Stopped(),
    ],
    "unload during backoff": [
        LoadRequested(),
        StartIssued(handle=HANDLE),
        CRASH,
        RestartScheduled(2.0, 1, 10.0),
        UnloadRequested(),
    ],
    "adopt after an app restart, then a crash while stopping": [
        Adopted(handle=HANDLE, ready=False),
        ReadyObserved(1.0),
        UnloadRequested(reason="shutdown"),
        StopIssued(),
        CRASH,
        UnloadRequested(),
    ],
    "adopt a ready server": [Adopted(handle=HANDLE, ready=True), StopIssued(), Stopped()],
    "a ready server hangs, is replaced after a backoff": [
        LoadRequested(),
        StartIssued(handle=HANDLE),
        ReadyObserved(load_duration_s=1.0),
        Unhealthy(reason="timed out", failures=3),
        RestartScheduled(delay_s=2.0, attempt=2, at=0.0),
        StartIssued(handle=HANDLE, attempt=2),
        ReadyObserved(load_duration_s=1.0),
    ],
}


@pytest.mark.parametrize("name", LIFECYCLES)
def test_every_step_of_a_normal_lifecycle_is_an_allowed_transition(name: str) -> None:
    state = ModelState(model_id="m1")
    for event in recorded(LIFECYCLES[name]):
        after = apply(state, event)
        check_transition(state.phase, after.phase)
        state = after


def test_the_table_names_every_phase_and_refuses_shortcuts() -> None:
    assert is_allowed(Phase.READY, Phase.READY)
    assert not is_allowed(Phase.FAILED, Phase.STARTING)
    with pytest.raises(IllegalTransition, match="from failed to starting"):
        check_transition(Phase.FAILED, Phase.STARTING)


# --- serialisation -------------------------------------------------------------------

SAMPLES: list[Event] = [
    BenchmarkStarted(run_id="3f9a0c1d2e4b", kind="sweep", workload="concurrency 1,8 x 32 requests"),
    BenchmarkFinished(run_id="3f9a0c1d2e4b", status="complete", summary="2 levels, 64 requests completed"),
    LoadRequested(),
    UnloadRequested(reason="removed"),
    StartIssued(handle=HANDLE, attempt=3),
    ReadyObserved(load_duration_s=71.5),
    StartFailed(reason="image missing", exit_code=None, log_tail=""),
    Crashed(exit_code=137, oom=True, log_tail="killed"),
    Unhealthy(reason="/health timed out after 10s", failures=3),
    RestartScheduled(delay_s=8.0, attempt=3, at=1234.5),
    GaveUp(reason="5 crashes in 10 min", crashes=5),
    StopIssued(reason="shutdown"),
    Stopped(reason="unload", exit_code=0),
    Adopted(handle=HANDLE, ready=True),
    AppStarted(instance="i1234", pid=77),
    AppStopped(reason="sigterm"),
]


def test_samples_cover_every_registered_type() -> None:
    assert {e.type for e in SAMPLES} == set(event_types())


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_every_event_round_trips(event: Event) -> None:
    type_name, payload = to_record(event)
    assert type_name == event.type == type(event).TYPE
    assert from_record(type_name, payload) == event


def test_unknown_types_and_mismatched_payloads_are_kept_not_fatal() -> None:
    unknown = from_record("ModelRenamed", {"to": "m2"})
    assert unknown == UnknownEvent("ModelRenamed", {"to": "m2"})
    assert (unknown.type, unknown.payload()) == ("ModelRenamed", {"to": "m2"})
    broken = from_record("ReadyObserved", {})  # a required field is missing
    assert broken == UnknownEvent("ReadyObserved", {})


def test_fields_added_by_newer_writers_are_ignored() -> None:
    assert from_record("Crashed", {"exit_code": 3, "signal": "SIGSEGV"}) == Crashed(exit_code=3)


# --- stream names --------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["app", "model:m1", "model:llama-3.1-8b_q4", "model:" + "a" * 64])
def test_valid_streams(stream: str) -> None:
    assert check_stream(stream) == stream


@pytest.mark.parametrize(
    "stream", ["", "apps", "model:", "model:Upper", "model:-x", "model:a b", "model:" + "a" * 65]
)
def test_invalid_streams(stream: str) -> None:
    with pytest.raises(InvalidStream):
        check_stream(stream)


# --- redaction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NGC_API_KEY=nvapi-abcdefghijk", "NGC_API_KEY=***"),
        ('export HF_TOKEN="hf_abc" done', 'export HF_TOKEN="***" done'),
        ('{"api_key": "sk-1", "n": 1}', '{"api_key": "***", "n": 1}'),
        ("Authorization: Bearer sk-123", "Authorization: ***"),
        ("curl -H 'x: Bearer abc.def'", "curl -H 'x: Bearer ***'"),
        ("vllm serve m --api-key sk-9 --port 1", "vllm serve m --api-key *** --port 1"),
        ("key was nvapi-0123456789abc", "key was ***"),
        ("max_tokens=256 prompt_tokens: 12", "max_tokens=256 prompt_tokens: 12"),
        ("HF_TOKEN_FILE=/run/hf --api-key-file /run/k", "HF_TOKEN_FILE=/run/hf --api-key-file /run/k"),
        ("AWS_SECRET_ACCESS_KEY=abc SECRET_KEY=def", "AWS_SECRET_ACCESS_KEY=*** SECRET_KEY=***"),
        ("DB_PASSWORD: hunter2", "DB_PASSWORD: ***"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_walks_nested_payloads() -> None:
    payload = {
        "handle": {"env": {"NGC_API_KEY": "nvapi-secret-value", "PATH": "/bin"}, "args": ["--token", "abc"]},
        "log_tail": "starting with NGC_API_KEY=nvapi-secret-value\nready",
        "max_tokens": 5,
        "token_count": 7,
        "client_secret": {"nested": "x"},
    }
    assert redact(payload) == {
        "handle": {"env": {"NGC_API_KEY": "***", "PATH": "/bin"}, "args": ["--token", "***"]},
        "log_tail": "starting with NGC_API_KEY=***\nready",
        "max_tokens": 5,
        "token_count": 7,
        "client_secret": "***",
    }


# --- status words ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "desired", "dot", "label"),
    [
        (Phase.READY, LOADED, Dot.GREEN, "Loaded & Ready"),
        (Phase.READY, UNLOADED, Dot.AMBER, "Unloading…"),
        (Phase.STOPPING, UNLOADED, Dot.AMBER, "Unloading…"),
        (Phase.STARTING, UNLOADED, Dot.AMBER, "Unloading…"),
        (Phase.STOPPED, UNLOADED, Dot.RED, "Available (Not Loaded)"),
        (Phase.STOPPED, LOADED, Dot.AMBER, "Loading…"),
        (Phase.BACKOFF, LOADED, Dot.AMBER, "Restarting… (exited with code 1)"),
        (Phase.CRASHED, LOADED, Dot.AMBER, "Crashed: exited with code 1"),
        (Phase.FAILED, LOADED, Dot.RED, "Failed: exited with code 1"),
    ],
)
def test_status_words(phase: Phase, desired: Desired, dot: Dot, label: str) -> None:
    shown = status(phase, desired, last_error="exited with code 1")
    assert (shown.dot, shown.label) == (dot, label)


def test_loading_shows_elapsed_and_usual_time() -> None:
    shown = status(Phase.STARTING, LOADED, elapsed_s=42, usual_s=70)
    assert shown.label == "Loading… 0:42 (usually 1:10)"


def test_offline_always_gives_the_reason() -> None:
    shown = status(Phase.STOPPED, UNLOADED, available=False, unavailable_reason="Docker not reachable")
    assert (shown.dot, shown.label) == (Dot.RED, "Offline: Docker not reachable")
