"""The planner's rules, table-driven on an injected clock: no servers, no sleeps.

A ``Timeline`` plays the reconciler's part in memory: it records events at its own ``now``,
folds them into the projection and the restart history exactly as the app does, and asks
``plan`` what to do next. So the backoff and give-up figures are checked through the same
folds the app uses, not through hand-built histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from lifecycle.core.events import (
    Adopted,
    Crashed,
    Event,
    GaveUp,
    LoadRequested,
    ReadyObserved,
    RecordedEvent,
    RestartScheduled,
    StartIssued,
    StopIssued,
    Stopped,
    UnloadRequested,
    model_stream,
)
from lifecycle.core.events import StartFailed as StartFailedEvent
from lifecycle.core.memory import PlannerMemory, fold_memory
from lifecycle.core.planner import (
    IDLE,
    REMOVED,
    STARTUP_TIMEOUT,
    UNWANTED,
    Action,
    Adopt,
    GiveUp,
    MarkCrashed,
    MarkReady,
    MarkStopped,
    MarkUnhealthy,
    Observed,
    RequestUnload,
    ScheduleRestart,
    Start,
    StartFailed,
    Stop,
    Target,
    plan,
    plan_adoption,
    span,
    transitional,
)
from lifecycle.core.policy import RestartPolicy
from lifecycle.core.projection import ModelState, fold
from lifecycle.core.states import LOADED, UNLOADED, Phase

T0 = 1_000_000.0
POLICY = RestartPolicy()  # the DESIGN.md figures: 2 s doubling to 60 s, reset after 10 min, 5 in 10 min
TARGET = Target(startup_timeout_s=120.0)
RUNNING = Observed(running=True)
READY = Observed(running=True, ready=True)


def handle(ref: str = "100", started_at: float = T0, model_id: str = "m") -> dict[str, Any]:
    return {"runtime": "process", "model_id": model_id, "ref": ref, "started_at": started_at, "extra": {}}


@dataclass
class Timeline:
    """One model's stream in memory, with the clock in the test's hands."""

    policy: RestartPolicy = POLICY
    now: float = T0
    events: list[RecordedEvent] = field(default_factory=list)

    def record(self, *events: Event) -> None:
        for event in events:
            self.events.append(
                RecordedEvent(
                    len(self.events) + 1, model_stream("m"), len(self.events) + 1, event, "test", self.now
                )
            )

    @property
    def state(self) -> ModelState:
        return fold(self.events) or ModelState(model_id="m")

    @property
    def memory(self) -> PlannerMemory:
        return fold_memory(self.events, self.policy)

    def plan(self, observed: Observed | None = None, target: Target | None = TARGET) -> list[Action]:
        return plan(self.state, target, observed, self.memory, self.now, self.policy)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def carry_out(self, actions: list[Action]) -> None:
        """Record what the reconciler would record for these actions."""
        for action in actions:
            match action:
                case Start(attempt=attempt):
                    self.record(StartIssued(handle=handle(started_at=self.now), attempt=attempt))
                case MarkReady(load_duration_s=duration):
                    self.record(ReadyObserved(duration))
                case MarkCrashed(exit_code=code, oom=oom):
                    self.record(Crashed(code, oom))
                case StartFailed(reason=reason, exit_code=code):
                    self.record(StartFailedEvent(reason, code))
                case ScheduleRestart(delay_s=delay, attempt=attempt, at=at):
                    self.record(RestartScheduled(delay, attempt, at))
                case GiveUp(reason=reason, crashes=crashes):
                    self.record(GaveUp(reason, crashes))
                case Stop(reason=reason, announce=announce):
                    if announce:
                        self.record(StopIssued(reason))
                    self.record(Stopped(reason, 0))
                case MarkStopped(reason=reason, exit_code=code):
                    self.record(Stopped(reason, code))
                case RequestUnload(reason=reason):
                    self.record(UnloadRequested(reason))

    def start_and_get_ready(self) -> None:
        """Plan the start due now, run the server and see it ready after 5 s."""
        actions = self.plan()
        assert [type(a) for a in actions] == [Start], actions
        self.carry_out(actions)
        self.advance(5)
        self.carry_out(self.plan(READY))
        assert self.state.phase == Phase.READY

    def crash(self, after_ready_s: float, code: int = 1) -> list[Action]:
        self.advance(after_ready_s)
        actions = self.plan(Observed(running=False, exit_code=code))
        self.carry_out(actions)
        return actions

    def wait_out_backoff(self) -> None:
        restart_at = self.memory.restart_at
        assert restart_at is not None
        self.now = max(self.now, restart_at)


def loaded() -> Timeline:
    timeline = Timeline()
    timeline.record(LoadRequested())
    return timeline


# --- restart backoff -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("streak", "delay"), [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (7, 60), (50, 60), (10_000, 60)]
)
def test_backoff_doubles_from_2_s_and_caps_at_60_s(streak: int, delay: float) -> None:
    assert POLICY.delay(streak) == delay


def test_crash_loop_restarts_after_2_4_8_16_32_60_60_s() -> None:
    timeline = Timeline(policy=RestartPolicy(crash_limit=100))
    timeline.record(LoadRequested())
    delays = []
    for _ in range(7):
        timeline.start_and_get_ready()
        actions = timeline.crash(after_ready_s=1)
        assert isinstance(actions[0], MarkCrashed)
        restart = actions[1]
        assert isinstance(restart, ScheduleRestart)
        assert restart.at == timeline.now + restart.delay_s
        delays.append(restart.delay_s)
        timeline.wait_out_backoff()
    assert delays == [2, 4, 8, 16, 32, 60, 60]


def test_restart_attempts_count_up_and_the_start_after_backoff_carries_it() -> None:
    timeline = loaded()
    timeline.start_and_get_ready()
    restart = timeline.crash(after_ready_s=30)[1]
    assert isinstance(restart, ScheduleRestart)
    assert restart.attempt == 2
    timeline.wait_out_backoff()
    assert timeline.plan() == [Start(attempt=2)]


@pytest.mark.parametrize(
    ("ready_for_s", "delay"),
    [(599.0, 16.0), (600.0, 2.0), (3600.0, 2.0)],
    ids=["just under 10 min ready keeps doubling", "10 min ready resets", "an hour ready resets"],
)
def test_backoff_resets_after_10_min_ready(ready_for_s: float, delay: float) -> None:
    timeline = Timeline(policy=RestartPolicy(crash_limit=100))
    timeline.record(LoadRequested())
    for _ in range(3):  # 2, 4, 8
        timeline.start_and_get_ready()
        timeline.crash(after_ready_s=1)
        timeline.wait_out_backoff()
    timeline.start_and_get_ready()
    restart = timeline.crash(after_ready_s=ready_for_s)[1]
    assert isinstance(restart, ScheduleRestart)
    assert restart.delay_s == delay


def test_backoff_is_not_due_before_its_time() -> None:
    timeline = loaded()
    timeline.start_and_get_ready()
    timeline.crash(after_ready_s=1)
    assert timeline.state.phase == Phase.BACKOFF
    timeline.advance(1.999)
    assert timeline.plan() == []
    timeline.advance(0.001)
    assert timeline.plan() == [Start(attempt=2)]


# --- giving up -----------------------------------------------------------------------------------


def test_gives_up_after_5_crashes_in_10_min_and_waits_for_a_load() -> None:
    timeline = loaded()
    for crash in range(1, 6):
        timeline.start_and_get_ready()
        actions = timeline.crash(after_ready_s=10)
        if crash < 5:
            assert isinstance(actions[1], ScheduleRestart)
            timeline.wait_out_backoff()
    assert actions == [MarkCrashed(1), GiveUp("5 failures within 10 min; load it again to retry", 5)]
    assert timeline.state.phase == Phase.FAILED
    # Failed stays failed: no restart, however long we wait.
    for wait in (1, 600, 86_400):
        timeline.advance(wait)
        assert timeline.plan() == []
    # The user clicks Load: the projection leaves failed and the count starts over.
    timeline.record(LoadRequested())
    assert timeline.state.phase == Phase.STOPPED
    assert timeline.plan() == [Start(attempt=1)]
    timeline.start_and_get_ready()
    assert isinstance(timeline.crash(after_ready_s=10)[1], ScheduleRestart)


def test_crashes_spread_over_more_than_10_min_never_give_up() -> None:
    timeline = Timeline(policy=RestartPolicy())
    timeline.record(LoadRequested())
    for _ in range(8):
        timeline.start_and_get_ready()
        actions = timeline.crash(after_ready_s=200)  # ~ one crash every 3.5 min
        assert isinstance(actions[1], ScheduleRestart), actions
        timeline.wait_out_backoff()


def test_failed_starts_count_towards_giving_up() -> None:
    timeline = loaded()
    for _ in range(4):
        timeline.carry_out(timeline.plan())  # Start
        timeline.advance(1)
        actions = timeline.plan(Observed(running=False, exit_code=3))
        assert isinstance(actions[0], StartFailed)
        assert isinstance(actions[1], ScheduleRestart)
        timeline.carry_out(actions)
        timeline.wait_out_backoff()
    timeline.carry_out(timeline.plan())
    actions = timeline.plan(Observed(running=False, exit_code=3))
    assert isinstance(actions[1], GiveUp)
    assert actions[1].crashes == 5


def test_a_crash_recorded_without_its_decision_is_decided_next() -> None:
    timeline = loaded()
    timeline.start_and_get_ready()
    timeline.record(Crashed(exit_code=137, oom=True))  # e.g. the app died right after recording it
    assert timeline.state.phase == Phase.CRASHED
    assert timeline.plan() == [ScheduleRestart(2.0, 2, timeline.now + 2.0)]


# --- starting ------------------------------------------------------------------------------------


def test_ready_records_the_load_duration() -> None:
    timeline = loaded()
    timeline.carry_out(timeline.plan())
    timeline.advance(71.5)
    assert timeline.plan(RUNNING) == []
    assert timeline.plan(READY) == [MarkReady(71.5)]


def test_start_timeout_stops_the_server_and_records_a_failed_start() -> None:
    timeline = loaded()
    timeline.carry_out(timeline.plan())
    waiting = Observed(running=True, probe_reason="/health answered 503: Loading model")
    timeline.advance(TARGET.startup_timeout_s - 0.001)
    assert timeline.plan(waiting) == []
    timeline.advance(0.001)
    assert timeline.plan(waiting) == [
        Stop(STARTUP_TIMEOUT, failure="not ready after 2 min (/health answered 503: Loading model)")
    ]


def test_after_a_start_timeout_the_restart_policy_applies() -> None:
    timeline = loaded()
    timeline.carry_out(timeline.plan())
    timeline.advance(TARGET.startup_timeout_s)
    timeline.record(StopIssued(STARTUP_TIMEOUT), StartFailedEvent("not ready after 2 min"))
    assert timeline.state.phase == Phase.CRASHED
    assert timeline.plan() == [ScheduleRestart(2.0, 2, timeline.now + 2.0)]


def test_premature_exit_is_a_failed_start_with_its_exit_code() -> None:
    timeline = loaded()
    timeline.carry_out(timeline.plan())
    timeline.advance(0.3)
    assert timeline.plan(Observed(running=False, exit_code=3)) == [
        StartFailed("exited before it was ready", 3),
        ScheduleRestart(2.0, 2, timeline.now + 2.0),
    ]


# --- unloading, stopping, removal ----------------------------------------------------------------

PLAIN_CASES: list[tuple[str, Phase, str, Observed | None, list[Action]]] = [
    ("nothing wanted, nothing runs", Phase.STOPPED, UNLOADED, None, []),
    ("wanted and stopped: start", Phase.STOPPED, LOADED, None, [Start(1)]),
    ("ready and running: nothing", Phase.READY, LOADED, RUNNING, []),
    ("unload a ready server", Phase.READY, UNLOADED, RUNNING, [Stop("unload")]),
    ("unload while starting stops it", Phase.STARTING, UNLOADED, READY, [Stop("unload")]),
    (
        "a stop that finished",
        Phase.STOPPING,
        UNLOADED,
        Observed(running=False, exit_code=0),
        [MarkStopped("unload", 0)],
    ),
    (
        "a stop left by an earlier app run",
        Phase.STOPPING,
        UNLOADED,
        RUNNING,
        [Stop("unload", announce=False)],
    ),
    (
        "reloaded while stopping: the stop ends first",
        Phase.STOPPING,
        LOADED,
        RUNNING,
        [Stop("unload", announce=False)],
    ),
    (
        "gone while unloading is not a crash",
        Phase.READY,
        UNLOADED,
        Observed(running=False),
        [MarkStopped("unload")],
    ),
    ("an unknown observation does nothing", Phase.READY, LOADED, Observed.unknown("Docker is down"), []),
    ("unknown while starting does nothing", Phase.STARTING, LOADED, Observed.unknown("Docker is down"), []),
    ("failed waits for the user", Phase.FAILED, LOADED, None, []),
]


@pytest.mark.parametrize(
    ("name", "phase", "desired", "observed", "expected"), PLAIN_CASES, ids=[c[0] for c in PLAIN_CASES]
)
def test_plain_cases(
    name: str, phase: Phase, desired: str, observed: Observed | None, expected: list[Action]
) -> None:
    state = ModelState(model_id="m", desired=desired, phase=phase, since=T0, handle=handle())  # type: ignore[arg-type]
    assert plan(state, TARGET, observed, PlannerMemory(), T0 + 1, POLICY) == expected


def test_ready_server_that_exits_is_a_crash_with_exit_code_and_oom() -> None:
    state = ModelState(model_id="m", desired=LOADED, phase=Phase.READY, since=T0, handle=handle())
    actions = plan(
        state, TARGET, Observed(running=False, exit_code=137, oom=True), PlannerMemory(), T0 + 30, POLICY
    )
    assert actions == [MarkCrashed(137, oom=True), ScheduleRestart(2.0, 2, T0 + 32)]


def test_a_hung_ready_server_is_marked_unhealthy_and_restarted_under_backoff() -> None:
    state = ModelState(model_id="m", desired=LOADED, phase=Phase.READY, since=T0, handle=handle())
    failing = Observed(running=True, liveness_failures=2)  # not yet the limit: nothing to do
    assert plan(state, TARGET, failing, PlannerMemory(), T0 + 30, POLICY) == []
    hung = Observed(running=True, unhealthy="/health timed out", liveness_failures=3)
    actions = plan(state, TARGET, hung, PlannerMemory(), T0 + 30, POLICY)
    assert actions == [MarkUnhealthy("/health timed out", 3), ScheduleRestart(2.0, 2, T0 + 32)]


def test_an_unwanted_hung_server_is_simply_stopped() -> None:
    state = ModelState(model_id="m", desired="unloaded", phase=Phase.READY, since=T0, handle=handle())
    hung = Observed(running=True, unhealthy="/health timed out", liveness_failures=3)
    assert plan(state, TARGET, hung, PlannerMemory(), T0 + 30, POLICY) == [Stop("unload")]


def test_stop_reasons_follow_the_unload_request() -> None:
    timeline = loaded()
    timeline.start_and_get_ready()
    timeline.record(UnloadRequested(reason="shutdown"))
    assert timeline.plan(RUNNING) == [Stop("shutdown")]


@pytest.mark.parametrize(
    ("phase", "observed", "expected"),
    [
        (Phase.READY, RUNNING, [RequestUnload(REMOVED), Stop(REMOVED)]),
        (Phase.STARTING, RUNNING, [RequestUnload(REMOVED), Stop(REMOVED)]),
        (Phase.BACKOFF, None, [RequestUnload(REMOVED)]),
        (Phase.FAILED, None, [RequestUnload(REMOVED)]),
        (Phase.STOPPED, None, [RequestUnload(REMOVED)]),
    ],
)
def test_a_model_removed_from_the_catalog_is_unloaded_and_stopped(
    phase: Phase, observed: Observed | None, expected: list[Action]
) -> None:
    state = ModelState(model_id="m", desired=LOADED, phase=phase, since=T0, handle=handle())
    assert plan(state, None, observed, PlannerMemory(), T0 + 1, POLICY) == expected


def test_a_removed_model_that_is_not_wanted_needs_nothing() -> None:
    assert plan(ModelState(model_id="m"), None, None, PlannerMemory(), T0, POLICY) == []


def test_removed_then_stopped_records_reason_removed() -> None:
    timeline = loaded()
    timeline.start_and_get_ready()
    timeline.carry_out(timeline.plan(RUNNING, target=None))
    assert [e.event for e in timeline.events[-3:]] == [
        UnloadRequested(REMOVED),
        StopIssued(REMOVED),
        Stopped(REMOVED, 0),
    ]
    assert timeline.state.desired == UNLOADED
    assert timeline.plan(None, target=None) == []


# --- adoption ------------------------------------------------------------------------------------


def state_of(desired: str, phase: Phase, ref: str | None = None) -> ModelState:
    return ModelState(model_id="m", desired=desired, phase=phase, handle=handle(ref) if ref else None)  # type: ignore[arg-type]


ADOPTION_CASES = [
    (
        "still wanted: adopt",
        {"m": state_of(LOADED, Phase.READY, "1")},
        [handle("1")],
        ["m"],
        [Adopt(handle("1"))],
    ),
    (
        "no longer wanted: stop",
        {"m": state_of(UNLOADED, Phase.READY, "1")},
        [handle("1")],
        ["m"],
        [Stop(UNWANTED, handle=handle("1"))],
    ),
    ("never heard of: stop", {}, [handle("1")], ["m"], [Stop(UNWANTED, handle=handle("1"))]),
    (
        "failed: stop",
        {"m": state_of(LOADED, Phase.FAILED)},
        [handle("1")],
        ["m"],
        [Stop(UNWANTED, handle=handle("1"))],
    ),
    (
        "removed from the catalog: stop",
        {"m": state_of(LOADED, Phase.READY, "1")},
        [handle("1")],
        [],
        [Stop(UNWANTED, handle=handle("1"))],
    ),
    (
        "wanted, started before StartIssued was recorded: adopt",
        {"m": state_of(LOADED, Phase.STOPPED)},
        [handle("7")],
        ["m"],
        [Adopt(handle("7"))],
    ),
    (
        "duplicates: keep the recorded one, stop the others first",
        {"m": state_of(LOADED, Phase.READY, "1")},
        [handle("2", started_at=T0 + 9), handle("1")],
        ["m"],
        [Stop(UNWANTED, handle=handle("2", started_at=T0 + 9)), Adopt(handle("1"))],
    ),
    (
        "duplicates, none recorded: keep the newest",
        {"m": state_of(LOADED, Phase.STOPPED)},
        [handle("2", started_at=T0 + 9), handle("3", started_at=T0 + 1)],
        ["m"],
        [Stop(UNWANTED, handle=handle("3", started_at=T0 + 1)), Adopt(handle("2", started_at=T0 + 9))],
    ),
]


@pytest.mark.parametrize(
    ("name", "states", "found", "loadable", "expected"), ADOPTION_CASES, ids=[c[0] for c in ADOPTION_CASES]
)
def test_adoption(
    name: str,
    states: dict[str, ModelState],
    found: list[dict[str, Any]],
    loadable: list[str],
    expected: list[Stop | Adopt],
) -> None:
    (only,) = plan_adoption(states, found, loadable)
    assert only.model_id == "m"
    assert list(only.actions) == expected


def test_adopted_server_is_watched_until_ready_and_not_counted_as_a_load_time() -> None:
    timeline = loaded()
    timeline.record(Adopted(handle=handle(), ready=False))
    assert timeline.state.phase == Phase.STARTING
    timeline.advance(3)
    timeline.carry_out(timeline.plan(READY))
    assert timeline.state.phase == Phase.READY
    assert timeline.memory.usual_load_s is None


def test_usual_load_time_is_the_median_of_our_starts() -> None:
    timeline = Timeline(policy=RestartPolicy(crash_limit=100))
    timeline.record(LoadRequested())
    for load_s in (10, 30, 20):
        timeline.carry_out(timeline.plan())
        timeline.advance(load_s)
        timeline.carry_out(timeline.plan(READY))
        timeline.crash(after_ready_s=1)
        timeline.wait_out_backoff()
    assert timeline.memory.usual_load_s == 20


# --- small helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [(600, "10 min"), (60, "1 min"), (2.5, "2.5 s"), (90, "90 s")])
def test_span(seconds: float, text: str) -> None:
    assert span(seconds) == text


@pytest.mark.parametrize(
    ("desired", "phase", "moving"),
    [
        (LOADED, Phase.STARTING, True),
        (UNLOADED, Phase.STOPPING, True),
        (LOADED, Phase.STOPPED, True),
        (LOADED, Phase.READY, False),
        (UNLOADED, Phase.STOPPED, False),
        (LOADED, Phase.FAILED, False),
    ],
)
def test_transitional(desired: str, phase: Phase, moving: bool) -> None:
    assert transitional(ModelState(model_id="m", desired=desired, phase=phase)) is moving  # type: ignore[arg-type]


IDLE_TARGET = Target(startup_timeout_s=120.0, idle_ttl_s=60.0)


@pytest.mark.parametrize(
    ("target", "observed", "after_ready_s", "expected"),
    [
        (IDLE_TARGET, RUNNING, 59.9, []),  # not idle long enough since it became ready
        (IDLE_TARGET, RUNNING, 60.0, [RequestUnload(IDLE)]),  # never used: idle from ready
        (IDLE_TARGET, Observed(running=True, busy=True), 3600, []),  # in use right now: never
        (IDLE_TARGET, Observed(running=True, last_used=T0 + 100), 159, []),  # used 59 s ago
        (IDLE_TARGET, Observed(running=True, last_used=T0 + 100), 160, [RequestUnload(IDLE)]),
        (TARGET, RUNNING, 10**6, []),  # no idle time set: never
        (Target(120.0, idle_ttl_s=0.0), RUNNING, 10**6, []),  # 0 is "never" too
    ],
)
def test_a_ready_model_nothing_uses_is_unloaded_after_its_idle_time(
    target: Target, observed: Observed, after_ready_s: float, expected: list[Action]
) -> None:
    state = ModelState(model_id="m", desired=LOADED, phase=Phase.READY, since=T0, handle=handle())
    assert plan(state, target, observed, PlannerMemory(), T0 + after_ready_s, POLICY) == expected


def test_an_idle_unload_stops_the_server_with_reason_idle() -> None:
    timeline = loaded()
    timeline.start_and_get_ready()
    timeline.advance(60)
    timeline.carry_out(timeline.plan(RUNNING, target=IDLE_TARGET))
    assert timeline.state.desired == UNLOADED
    assert timeline.plan(RUNNING, target=IDLE_TARGET) == [Stop(IDLE)]
    # A model still starting is never "idle": its startup is what it is waiting on.
    starting = ModelState(model_id="m", desired=LOADED, phase=Phase.STARTING, since=T0, handle=handle())
    assert plan(starting, IDLE_TARGET, RUNNING, PlannerMemory(), T0 + 100, POLICY) == []
