"""The reconciler over an in-memory runtime: the real service, store and scheduler, no processes.

Each test builds a real ``LifecycleService`` over a real SQLite file and a catalog of process
models, with ``FakeRuntime`` in place of the process runtime and ``FakeReadyProbe`` in place of
HTTP. Restart delays are tens of milliseconds, so crash loops, give-up, adoption after a hard
kill and load/unload races run in well under a second each. Waits are on conditions (events
recorded, the fake's state, reconciler passes) and bounded; nothing sleeps.

After every test the harness shuts every service down and checks that no fake server is left
running and that the projection equals the fold of the recorded events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Final

import pytest

from db.migrate import upgrade_to_head
from lifecycle.catalog import RuntimeKind
from lifecycle.core.events import (
    APP_STREAM,
    Adopted,
    AppStopped,
    Crashed,
    Event,
    GaveUp,
    RecordedEvent,
    RestartScheduled,
    StartFailed,
    StartIssued,
    StopIssued,
    Stopped,
    UnloadRequested,
    model_stream,
)
from lifecycle.core.planner import STARTUP_TIMEOUT, UNWANTED
from lifecycle.core.policy import RestartPolicy
from lifecycle.core.projection import fold
from lifecycle.core.values import Handle
from lifecycle.observe import readiness
from lifecycle.runtimes.protocol import PortInUse, Runtime, RuntimeFailure
from lifecycle.runtimes.registry import Runtimes
from lifecycle.service import CannotLoad, LifecycleService
from settings import Settings
from tests.catalogs import sim_process, write_catalog
from tests.fake_runtime import SIGTERM_EXIT, FakeReadyProbe, FakeRuntime, NoHttpClient
from tests.support import wait_until

A: Final = "fake-a"
B: Final = "fake-b"
C: Final = "fake-c"
SLOW: Final = "fake-slow"  # gives up waiting for ready after SLOW_TIMEOUT_S
SLOW_TIMEOUT_S: Final = 0.25
BASE_PORT: Final = 18_400  # never bound: the fake runs no server
WAIT_S: Final = 5.0  # the bound of every wait; a pass takes milliseconds
CLICKERS: Final = 6  # threads clicking Load and Unload at once in the race tests
CLICKS: Final = 5  # clicks per thread, alternating

# Restart figures small enough for a five-crash loop to take a fraction of a second.
POLICY: Final = RestartPolicy(
    initial_s=0.01, factor=2.0, max_s=0.1, reset_after_s=600.0, crash_limit=5, crash_window_s=600.0
)
# A restart that never comes within a test: for what happens while a restart is pending.
SLOW_RESTARTS: Final = RestartPolicy(initial_s=60.0, max_s=60.0)
TICKS: Final[dict[str, Any]] = {
    "tick_s": 0.1,
    "fast_tick_s": 0.05,
    "catalog_poll_s": 60.0,
    "stop_grace_s": 0.0,
}


# --- the harness -----------------------------------------------------------------------------------


class Harness:
    """Services over one database and one fake runtime; shut down and checked after the test."""

    def __init__(self, settings: Settings, fake: FakeRuntime, probe: FakeReadyProbe) -> None:
        self.settings = settings
        self.fake = fake
        self.probe = probe
        self._running: list[LifecycleService] = []
        self._all: list[LifecycleService] = []

    def service(self, policy: RestartPolicy = POLICY) -> LifecycleService:
        """A started service whose only process runtime is the fake."""
        fake = self.fake
        runtimes = Runtimes(self.settings, factories={RuntimeKind.PROCESS: lambda _settings: fake})
        service = LifecycleService(self.settings, runtimes=runtimes, policy=policy, probe=self.probe)
        self._all.append(service)
        service.start()
        self._running.append(service)
        return service

    def shutdown(self, service: LifecycleService) -> None:
        if service in self._running:
            self._running.remove(service)
        service.shutdown()

    def kill_hard(self, service: LifecycleService) -> None:
        """End the service's threads as a SIGKILL would: nothing is stopped and nothing recorded.
        Its servers keep running in the fake, for the next service to find."""
        self._running.remove(service)
        service.reconciler.shutdown(stop_servers=False)

    def close(self) -> None:
        for service in reversed(self._running):
            service.shutdown()
        self._running.clear()
        assert self.fake.live() == [], "a server outlived the app"
        if self._all:
            assert_projection_matches_events(self._all[0])


def assert_projection_matches_events(service: LifecycleService) -> None:
    store = service.store
    for model_id, state in store.model_states().items():
        assert fold(store.read_stream(model_stream(model_id))) == state, model_id


@pytest.fixture(autouse=True)
def no_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """The readiness watch makes an httpx.Client for its probes even when the probe is ours: a
    stand-in that costs nothing and fails if anything would go over HTTP."""
    monkeypatch.setattr(readiness, "httpx", SimpleNamespace(Client=NoHttpClient))


@pytest.fixture
def fake() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def harness(settings: Settings, tmp_path: Path, fake: FakeRuntime) -> Iterator[Harness]:
    models = [sim_process(model_id, BASE_PORT + i) for i, model_id in enumerate((A, B, C))]
    models.append({**sim_process(SLOW, BASE_PORT + 9), "startup_timeout_s": SLOW_TIMEOUT_S})
    catalog = write_catalog(tmp_path / "models.yaml", *models)
    tuned = settings.model_copy(update={"catalog": catalog, **TICKS})
    upgrade_to_head(tuned.db_url)
    harness = Harness(tuned, fake, FakeReadyProbe(fake))
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def service(harness: Harness) -> LifecycleService:
    return harness.service()


# --- reading what was recorded ---------------------------------------------------------------------


def events(service: LifecycleService, model_id: str) -> list[RecordedEvent]:
    return service.store.read_stream(model_stream(model_id))


def types(service: LifecycleService, model_id: str) -> list[str]:
    return [e.type for e in events(service, model_id)]


def of_type(service: LifecycleService, model_id: str, event_type: type[Event]) -> list[Any]:
    return [e.event for e in events(service, model_id) if isinstance(e.event, event_type)]


def recorded(service: LifecycleService, model_id: str, event_type: type[Event]) -> list[RecordedEvent]:
    return [e for e in events(service, model_id) if isinstance(e.event, event_type)]


def wait_for(condition: Callable[[], object], what: str, now: Callable[[], object] | None = None) -> None:
    """``wait_until`` bounded by ``WAIT_S``; on a timeout the message ends with ``now()``."""
    try:
        wait_until(condition, WAIT_S, interval_s=0.01, what=what)
    except AssertionError as exc:
        if now is None:
            raise
        raise AssertionError(f"{exc}; now: {now()}") from None


def wait_count(service: LifecycleService, model_id: str, event_type: str, count: int) -> None:
    wait_for(
        lambda: types(service, model_id).count(event_type) >= count,
        f"{count} x {event_type} for {model_id}",
        lambda: types(service, model_id),
    )


def wait_phase(service: LifecycleService, model_id: str, phase: str) -> None:
    wait_for(
        lambda: service.status_of(model_id).phase == phase,
        f"{model_id} {phase}",
        lambda: (service.status_of(model_id).phase, types(service, model_id)),
    )


def wait_passes(service: LifecycleService, count: int = 3) -> None:
    """Run at least ``count`` more passes, kicked one after the other, the first of them begun
    after this call: "nothing more happened" is then a fact, not a hope."""
    reconciler = service.reconciler
    start = reconciler.passes
    for n in range(1, count + 2):
        # A pass already under way ends as start + 1, so one pass more than asked is waited for.
        reconciler.kick()
        wait_for(lambda n=n: reconciler.passes >= start + n, "a kicked reconciler pass")


def handle_of(service: LifecycleService, model_id: str) -> dict[str, Any] | None:
    state = service.store.model_state(model_id)
    return None if state is None else state.handle


# --- load, ready, unload ---------------------------------------------------------------------------


def test_the_fake_speaks_the_runtime_protocol(fake: FakeRuntime) -> None:
    assert isinstance(fake, Runtime)
    assert fake.kind == RuntimeKind.PROCESS.value


def test_load_starts_one_server_and_records_ready_once_it_answers(
    harness: Harness, fake: FakeRuntime
) -> None:
    fake.auto_ready = False
    service = harness.service()
    status = service.load(A, actor="cli")
    assert status.desired == "loaded"
    wait_count(service, A, "StartIssued", 1)
    assert service.status_of(A).phase == "starting"
    wait_passes(service)
    assert types(service, A) == ["LoadRequested", "StartIssued"], "not ready: nothing more to record"

    handle = fake.set_ready(A)
    status = service.wait(A, "ready", timeout_s=WAIT_S)
    assert status.phase == "ready"
    assert status.dot == "green"
    assert types(service, A) == ["LoadRequested", "StartIssued", "ReadyObserved"]
    (issued,) = of_type(service, A, StartIssued)
    assert issued.attempt == 1
    assert issued.handle == handle.to_json() == handle_of(service, A)
    assert [e.actor for e in events(service, A)] == ["cli", "reconciler", "reconciler"]
    assert fake.starts == 1
    assert fake.live(A) == [handle]


def test_unload_stops_the_server_and_records_stopped(service: LifecycleService, fake: FakeRuntime) -> None:
    service.load(A)
    assert service.wait(A, "ready", timeout_s=WAIT_S).phase == "ready"
    service.unload(A)
    status = service.wait(A, "stopped", timeout_s=WAIT_S)
    assert status.phase == "stopped"
    assert status.desired == "unloaded"
    assert types(service, A) == [
        "LoadRequested",
        "StartIssued",
        "ReadyObserved",
        "UnloadRequested",
        "StopIssued",
        "Stopped",
    ]
    (stopped,) = of_type(service, A, Stopped)
    assert stopped.reason == "unload"
    assert stopped.exit_code == SIGTERM_EXIT
    assert fake.live() == []
    assert fake.stops == 1
    assert handle_of(service, A) is None

    service.unload(A)  # already unloaded: nothing to record, nothing to stop
    wait_passes(service)
    assert types(service, A)[-1] == "Stopped"
    assert fake.stop_calls == 1


def test_load_of_an_offline_model_is_refused_with_the_runtimes_reason(
    service: LifecycleService, fake: FakeRuntime
) -> None:
    fake.set_offline(A, "model files not found at /models/a.gguf")
    with pytest.raises(CannotLoad, match=r"model files not found at /models/a\.gguf"):
        service.load(A)
    assert types(service, A) == []
    assert fake.start_calls == 0


# --- crashes, restarts, give-up --------------------------------------------------------------------


def crash_when_ready(service: LifecycleService, fake: FakeRuntime, model_id: str, times: int) -> None:
    """Crash the model's server each time it is ready again, ``times`` times (exit code 1, then 2...)."""
    for n in range(1, times + 1):
        wait_count(service, model_id, "ReadyObserved", n)
        wait_phase(service, model_id, "ready")
        fake.crash(model_id, exit_code=n, oom=n == 2)


def test_a_crash_is_recorded_and_restarted_after_growing_delays(
    service: LifecycleService, fake: FakeRuntime
) -> None:
    service.load(A)
    crash_when_ready(service, fake, A, times=3)
    wait_count(service, A, "ReadyObserved", 4)
    assert types(service, A) == [
        "LoadRequested",
        "StartIssued",
        "ReadyObserved",
        *(["Crashed", "RestartScheduled", "StartIssued", "ReadyObserved"] * 3),
    ]
    crashes = of_type(service, A, Crashed)
    assert [c.exit_code for c in crashes] == [1, 2, 3]
    assert [c.oom for c in crashes] == [False, True, False]
    assert "exited with code 2 (out of memory)" in crashes[1].log_tail

    scheduled = of_type(service, A, RestartScheduled)
    assert [s.delay_s for s in scheduled] == [POLICY.delay(1), POLICY.delay(2), POLICY.delay(3)]
    assert [s.delay_s for s in scheduled] == [0.01, 0.02, 0.04]
    assert [s.attempt for s in scheduled] == [2, 3, 4]
    starts = of_type(service, A, StartIssued)
    assert [s.attempt for s in starts] == [1, 2, 3, 4]
    restarted_at = [e.ts for e in recorded(service, A, StartIssued)][1:]
    for restart, at in zip(scheduled, restarted_at, strict=True):
        assert at >= restart.at, "restarted before its delay was over"
    refs = {s.handle["ref"] for s in starts}
    assert len(refs) == 4, "every restart is a new server"
    # Each dead server's remains are cleared once its exit is recorded.
    wait_for(lambda: fake.discards == 3, "3 crashed servers cleared", lambda: fake.discards)
    assert len(fake.live(A)) == 1
    assert fake.peak(A) == 1
    status = service.status_of(A)
    assert status.restarts == 3
    assert status.last_error is None, "ready again clears the error"


def test_a_crash_loop_gives_up_and_a_new_load_starts_over(
    service: LifecycleService, fake: FakeRuntime
) -> None:
    service.load(A)
    crash_when_ready(service, fake, A, times=5)
    wait_phase(service, A, "failed")
    assert types(service, A)[-2:] == ["Crashed", "GaveUp"]
    (gave_up,) = of_type(service, A, GaveUp)
    assert gave_up.crashes == 5
    assert "5 failures within 10 min" in gave_up.reason
    status = service.status_of(A)
    assert status.dot == "red"
    assert status.desired == "loaded"
    assert status.last_error is not None
    assert "exited with code 5" in status.last_error
    wait_passes(service, 5)
    assert fake.start_calls == 5, "a failed model is not restarted"
    assert fake.live() == []

    service.load(A)
    assert service.wait(A, "ready", timeout_s=WAIT_S).phase == "ready"
    assert types(service, A)[-4:] == ["GaveUp", "LoadRequested", "StartIssued", "ReadyObserved"]
    assert of_type(service, A, StartIssued)[-1].attempt == 1
    assert service.status_of(A).restarts == 0
    assert fake.starts == 6


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (PortInUse(BASE_PORT, "pid 4242"), f"port {BASE_PORT} is already in use by pid 4242"),
        (OSError("no space left on device"), "could not start: OSError('no space left on device')"),
    ],
    ids=["runtime-failure", "runtime-bug"],
)
def test_a_failed_start_is_recorded_with_its_reason_and_retried(
    service: LifecycleService, fake: FakeRuntime, error: Exception, reason: str
) -> None:
    fake.fail_next_start(error)
    service.load(A)
    assert service.wait(A, "ready", timeout_s=WAIT_S).phase == "ready"
    assert types(service, A) == [
        "LoadRequested",
        "StartFailed",
        "RestartScheduled",
        "StartIssued",
        "ReadyObserved",
    ]
    (failed,) = of_type(service, A, StartFailed)
    assert failed.reason == reason
    assert failed.exit_code is None
    assert f"start of {A} failed" in failed.log_tail
    (scheduled,) = of_type(service, A, RestartScheduled)
    assert (scheduled.delay_s, scheduled.attempt) == (POLICY.initial_s, 2)
    assert of_type(service, A, StartIssued)[0].attempt == 2
    assert (fake.start_calls, fake.starts) == (2, 1)


def test_starts_that_keep_failing_give_up_after_five(service: LifecycleService, fake: FakeRuntime) -> None:
    fake.fail_next_start(PortInUse(BASE_PORT, None), times=5)
    service.load(A)
    wait_phase(service, A, "failed")
    assert types(service, A) == [
        "LoadRequested",
        *(["StartFailed", "RestartScheduled"] * 4),
        "StartFailed",
        "GaveUp",
    ]
    assert of_type(service, A, GaveUp)[0].crashes == 5
    delays = [e.delay_s for e in of_type(service, A, RestartScheduled)]
    assert delays == [0.01, 0.02, 0.04, 0.08]
    last_error = service.status_of(A).last_error
    assert last_error is not None
    assert "already in use by another program" in last_error
    assert (fake.start_calls, fake.starts) == (5, 0)


def test_an_exit_before_ready_is_a_failed_start_with_its_exit_code(
    harness: Harness, fake: FakeRuntime
) -> None:
    fake.auto_ready = False
    service = harness.service()
    service.load(A)
    wait_count(service, A, "StartIssued", 1)
    fake.crash(A, exit_code=3)
    wait_count(service, A, "StartIssued", 2)
    assert types(service, A)[:5] == [
        "LoadRequested",
        "StartIssued",
        "StartFailed",
        "RestartScheduled",
        "StartIssued",
    ]
    (failed,) = of_type(service, A, StartFailed)
    assert (failed.reason, failed.exit_code) == ("exited before it was ready", 3)
    assert "exited with code 3" in failed.log_tail
    fake.set_ready(A)
    assert service.wait(A, "ready", timeout_s=WAIT_S).phase == "ready"


def test_a_start_that_never_gets_ready_is_stopped_and_retried(harness: Harness, fake: FakeRuntime) -> None:
    fake.auto_ready = False
    service = harness.service()
    service.load(SLOW)
    wait_count(service, SLOW, "RestartScheduled", 1)
    assert types(service, SLOW)[:5] == [
        "LoadRequested",
        "StartIssued",
        "StopIssued",
        "StartFailed",
        "RestartScheduled",
    ]
    (stop,) = of_type(service, SLOW, StopIssued)[:1]
    assert stop.reason == STARTUP_TIMEOUT
    failed = of_type(service, SLOW, StartFailed)[0]
    assert failed.reason == f"not ready after {SLOW_TIMEOUT_S:g} s (/health answered 503: Loading model)"
    first = of_type(service, SLOW, StartIssued)[0]
    assert not fake.server(first.handle).running
    assert fake.stops >= 1


def test_an_unload_during_backoff_cancels_the_restart(harness: Harness, fake: FakeRuntime) -> None:
    service = harness.service(policy=SLOW_RESTARTS)
    service.load(A)
    wait_phase(service, A, "ready")
    fake.crash(A, exit_code=1)
    wait_phase(service, A, "backoff")
    wait_for(lambda: fake.discards == 1, "the crashed server's remains cleared")
    service.unload(A)
    assert service.wait(A, "stopped", timeout_s=WAIT_S).phase == "stopped"
    wait_passes(service, 5)
    assert types(service, A) == [
        "LoadRequested",
        "StartIssued",
        "ReadyObserved",
        "Crashed",
        "RestartScheduled",
        "UnloadRequested",
    ]
    assert fake.start_calls == 1


def test_a_server_the_runtime_cannot_see_is_neither_restarted_nor_forgotten(
    service: LifecycleService, fake: FakeRuntime
) -> None:
    service.load(A)
    wait_phase(service, A, "ready")
    fake.fail_inspect(RuntimeFailure("Docker is not reachable"))
    fake.crash(A, exit_code=9)
    wait_passes(service, 5)
    assert types(service, A) == ["LoadRequested", "StartIssued", "ReadyObserved"], "unknown is not gone"
    assert fake.start_calls == 1
    unseen = service.status_of(A)  # nobody can tell whether it runs: not shown as ready
    assert (unseen.status, unseen.reason, unseen.loaded, unseen.available) == (
        "Offline", "Docker is not reachable", False, False,
    )  # fmt: skip

    fake.fail_inspect(None)
    wait_count(service, A, "ReadyObserved", 2)
    assert service.status_of(A).reason is None
    assert of_type(service, A, Crashed)[0].exit_code == 9
    assert fake.peak(A) == 1


# --- races ----------------------------------------------------------------------------------------


def run_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` on ``count`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(WAIT_S)
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), name=f"click-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert not any(t.is_alive() for t in threads), "a command hung"
    if errors:
        raise errors[0]


def test_fifty_concurrent_loads_start_exactly_one_server(
    service: LifecycleService, fake: FakeRuntime
) -> None:
    run_threads(50, lambda _i: service.load(A, actor="api"))
    assert service.wait(A, "ready", timeout_s=WAIT_S).phase == "ready"
    wait_passes(service)
    assert types(service, A) == ["LoadRequested", "StartIssued", "ReadyObserved"]
    assert fake.start_calls == 1
    assert len(fake.live(A)) == 1


@pytest.mark.parametrize("last", ["load", "unload"])
def test_load_unload_races_settle_on_the_last_word_with_never_two_servers(
    service: LifecycleService, fake: FakeRuntime, last: str
) -> None:
    def click(i: int) -> None:
        for n in range(CLICKS):
            if (i + n) % 2:
                service.load(A, actor="api")
            else:
                service.unload(A, actor="api")

    run_threads(CLICKERS, click)
    if last == "load":
        service.load(A)
        assert service.wait(A, "ready", timeout_s=WAIT_S).phase == "ready"
        wait_passes(service)
        (live,) = fake.live(A)
        assert live.to_json() == handle_of(service, A)
    else:
        service.unload(A)
        assert service.wait(A, "stopped", timeout_s=WAIT_S).phase == "stopped"
        wait_passes(service)
        assert fake.live(A) == []
        assert service.status_of(A).desired == "unloaded"
    assert fake.peak(A) == 1, "two servers of one model ran at once"
    assert fake.starts == fake.stops + (1 if last == "load" else 0)
    assert len(of_type(service, A, StartIssued)) == fake.starts


def test_an_unload_while_the_start_is_under_way_stops_the_new_server(
    service: LifecycleService, fake: FakeRuntime
) -> None:
    with fake.holding_starts():
        service.load(A)
        wait_for(lambda: fake.starts_held == 1, "the start under way")
        service.unload(A)
        assert service.reconciler.acting_on(A)
        # The phase says stopped, but a server is on its way: "stopped" is not true yet.
        status = service.wait(A, "stopped", timeout_s=0.1)
        assert service.reconciler.acting_on(A)
        assert status.desired == "unloaded"
    status = service.wait(A, "stopped", timeout_s=WAIT_S)
    assert status.phase == "stopped"
    assert fake.live() == [], "wait(stopped) returned while a server of the model ran"
    assert types(service, A) == ["LoadRequested", "UnloadRequested", "StartIssued", "StopIssued", "Stopped"]
    assert (fake.starts, fake.stops) == (1, 1)


def test_a_load_while_the_apps_own_start_is_under_way_is_accepted(
    service: LifecycleService, fake: FakeRuntime
) -> None:
    """The window between spawning a server and recording StartIssued: the runtime's check sees
    a server of the model running (the app's own), which must not read as a stranger's."""
    with fake.holding_spawned_starts():
        service.load(A)
        wait_for(lambda: len(fake.live(A)) == 1, "the server spawned, StartIssued not recorded yet")
        service.unload(A)
        assert not fake.check(service.catalog[A]).available  # what a load used to trip over
        status = service.load(A)  # used to raise CannotLoad "... already running as pid N"
        assert status.desired == "loaded"
        assert status.available, status.status  # nor is the model shown as Offline meanwhile
    assert service.wait(A, "ready", timeout_s=WAIT_S).phase == "ready"
    assert len(fake.live(A)) == 1
    assert fake.peak(A) == 1
    assert types(service, A)[:3] == ["LoadRequested", "UnloadRequested", "LoadRequested"]


# --- adoption and exit ----------------------------------------------------------------------------


def test_after_a_hard_kill_the_next_run_adopts_the_wanted_server_and_stops_the_rest(
    harness: Harness, fake: FakeRuntime
) -> None:
    first = harness.service()
    first.load(A)
    first.load(B)
    wait_phase(first, A, "ready")
    wait_phase(first, B, "ready")
    kept = Handle.from_json(handle_of(first, A) or {})
    harness.kill_hard(first)
    first.unload(B)  # the user's last click, recorded as the app died: no reconciler acts on it
    # An even older server of A, from a run before: adoption must never leave two.
    orphan = fake.add_leftover(A, first.catalog[A].url)
    assert len(fake.live()) == 3

    second = harness.service()
    wait_for(lambda: types(second, A)[-1:] == ["Adopted"], "A adopted", lambda: types(second, A))
    wait_for(lambda: types(second, B)[-1:] == ["Stopped"], "B stopped", lambda: types(second, B))
    wait_passes(second)
    assert fake.starts == 2, "nothing was started again"
    assert fake.live() == [kept]
    assert not fake.server(orphan).running

    assert types(second, A) == [
        "LoadRequested",
        "StartIssued",
        "ReadyObserved",
        "StopIssued",
        "Stopped",
        "Adopted",
    ]
    assert [e.reason for e in of_type(second, A, Stopped)] == [UNWANTED]
    (adopted,) = of_type(second, A, Adopted)
    assert adopted.handle == kept.to_json()
    assert adopted.ready is True
    assert second.status_of(A).phase == "ready"
    assert types(second, B)[-3:] == ["UnloadRequested", "StopIssued", "Stopped"]
    assert of_type(second, B, Stopped)[0].reason == UNWANTED
    assert fake.peak(A) == 2, "the orphan and the kept server: what adoption found, not what it made"

    # The adopted server is looked after like one of ours: its crash is restarted.
    fake.crash(A, exit_code=1)
    wait_count(second, A, "ReadyObserved", 2)
    assert fake.starts == 3
    assert len(fake.live(A)) == 1


def test_a_leftover_of_a_model_without_history_is_stopped(harness: Harness, fake: FakeRuntime) -> None:
    """A server the database knows nothing of (the DB file was deleted and recreated at the same
    path, so the instance name and the servers' markers still match) is unwanted: stopped."""
    fake.add_leftover(C, f"http://127.0.0.1:{BASE_PORT + 2}")
    service = harness.service()
    try:
        wait_for(lambda: not service.reconciler.acting_on(C), "the adoption of C's leftover to end")
        assert fake.live(C) == [], f"the leftover of C is still running ({types(service, C)})"
    finally:
        for handle in fake.live(C):  # leave nothing running for the harness's own check
            fake.stop(handle, 0)


def test_shutdown_stops_every_server_in_parallel_and_records_why(harness: Harness, fake: FakeRuntime) -> None:
    fake.auto_ready = False
    service = harness.service()
    service.load(A)
    service.load(B)
    wait_count(service, A, "StartIssued", 1)
    wait_count(service, B, "StartIssued", 1)
    fake.set_ready(A)
    wait_phase(service, A, "ready")  # B stays starting

    exiting = threading.Thread(target=harness.shutdown, args=(service,), name="exit")
    with fake.holding_stops():
        exiting.start()
        wait_for(lambda: fake.stops_held == 2, "both stops under way at once")
    exiting.join(WAIT_S)
    assert not exiting.is_alive()

    assert fake.live() == []
    assert fake.stops == 2
    for model_id, before in ((A, "ReadyObserved"), (B, "StartIssued")):
        assert types(service, model_id)[-4:] == [before, "UnloadRequested", "StopIssued", "Stopped"]
        (unload,) = of_type(service, model_id, UnloadRequested)
        (stop,) = of_type(service, model_id, StopIssued)
        (stopped,) = of_type(service, model_id, Stopped)
        assert unload.reason == stop.reason == stopped.reason == "shutdown"
        assert stopped.exit_code == SIGTERM_EXIT
        assert service.status_of(model_id).phase == "stopped"
    assert types(service, C) == []
    app = [e.event for e in service.store.read_stream(APP_STREAM)]
    assert [e.type for e in app] == ["AppStarted", "AppStopped"]
    assert isinstance(app[-1], AppStopped)
    assert app[-1].reason == "shutdown"


def test_a_load_whose_look_at_the_port_finds_its_own_new_server_is_not_refused(
    service: LifecycleService, fake: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race CI once caught: one click reads the model stopped and looks at its port; while it
    looks, another click loads the model and the reconciler starts it; the look then finds that
    server. It is the app's own, so the first click must not be refused."""
    look = service._availability.refresh

    def slow_look(spec: Any) -> Any:
        monkeypatch.setattr(service._availability, "refresh", look)  # the other click looks normally
        other = threading.Thread(target=service.load, args=(A,), kwargs={"actor": "api"})
        other.start()
        other.join(WAIT_S)
        wait_for(lambda: fake.live(A) and not service.reconciler.acting_on(A), "the other click's start")
        return look(spec)  # now sees a live server on the model's port

    monkeypatch.setattr(service._availability, "refresh", slow_look)
    service.load(A)  # decided again on the new state: already asked for, nothing to add
    assert types(service, A).count("LoadRequested") == 1
    assert service.wait(A, "ready", timeout_s=WAIT_S).phase == "ready"
    assert fake.peak(A) == 1


def test_a_wait_ends_when_its_caller_abandons_it(service: LifecycleService) -> None:
    asked: list[bool] = []

    def abandon() -> bool:
        asked.append(True)
        return len(asked) >= 2  # the second look: a cancel, or the app stopping

    started = time.monotonic()
    status = service.wait(A, "ready", timeout_s=60, abandon=abandon)
    assert status.phase == "stopped"  # nothing was loaded: it would have waited the full minute
    assert len(asked) == 2
    assert time.monotonic() - started < 5
