"""The reconciler against real simulator processes and a real SQLite store.

Every test drives the app's own door (LifecycleService) and reads back the recorded events;
the shared fixture shuts the service down and checks the projection equals the fold of the
events afterwards. Waits are on conditions (events recorded, passes run), never on sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lifecycle.core.events import (
    Crashed,
    GaveUp,
    LoadRequested,
    ReadyObserved,
    RestartScheduled,
    StartFailed,
    StartIssued,
    Stopped,
)
from lifecycle.core.planner import STARTUP_TIMEOUT
from lifecycle.service import LifecycleService
from lifecycle.supervisor.wakeup import SingleFlight
from settings import Settings
from tests.catalogs import write_catalog
from tests.integration.lifecycle_env import (
    LOADED_CRASHED_RESTARTED,
    events,
    make_settings,
    of_type,
    pid_gone,
    running_service,
    servers_of,
    sim_model,
    types,
    wait_for_count,
    wait_for_types,
    wait_passes,
)
from tests.support import wait_until

ServiceFactory = Callable[..., LifecycleService]


@pytest.fixture
def service_with(settings: Settings, tmp_path: Path) -> Iterator[ServiceFactory]:
    """Start a service over a catalog of the given models (and settings overrides)."""
    stack: list[Any] = []

    def make(*models: dict[str, Any], **overrides: Any) -> LifecycleService:
        catalog = write_catalog(tmp_path / "models.yaml", *models)
        context = running_service(make_settings(settings, catalog, **overrides))
        stack.append(context)
        return context.__enter__()

    yield make
    for context in reversed(stack):
        context.__exit__(None, None, None)


def test_load_becomes_ready(service_with: ServiceFactory) -> None:
    service = service_with(sim_model("sim-a", startup_s=1))
    status = service.load("sim-a", actor="cli")
    assert status.desired == "loaded"
    assert status.dot == "orange"
    status = service.wait("sim-a", "ready", timeout_s=20)
    assert status.loaded
    assert status.dot == "green"
    assert status.status == "Loaded & Ready"
    assert types(service, "sim-a") == ["LoadRequested", "StartIssued", "ReadyObserved"]
    (ready,) = of_type(service, "sim-a", ReadyObserved)
    assert 1.0 <= ready.load_duration_s < 10
    assert service.status_of("sim-a").usual_load_s == ready.load_duration_s
    loads = [e for e in service.history("sim-a") if e.type == "LoadRequested"]
    assert [e.actor for e in loads] == ["cli"]


def test_a_crash_is_restarted_with_every_step_recorded(service_with: ServiceFactory) -> None:
    service = service_with(sim_model("sim-a", "--crash-after-s", "1.5", startup_s=0.3))
    service.load("sim-a")
    wait_for_types(service, "sim-a", LOADED_CRASHED_RESTARTED, timeout_s=30)
    crash = of_type(service, "sim-a", Crashed)[0]
    assert crash.exit_code == 1
    assert crash.oom is False
    assert "crash" in crash.log_tail
    starts = of_type(service, "sim-a", StartIssued)
    assert [s.attempt for s in starts[:2]] == [1, 2]
    assert starts[0].handle["ref"] != starts[1].handle["ref"]


def test_a_crash_loop_gives_up_after_5_and_a_new_load_starts_again(service_with: ServiceFactory) -> None:
    service = service_with(sim_model("sim-a", "--crash-after-s", "0.4"))
    service.load("sim-a")
    wait_until(lambda: service.status_of("sim-a").phase == "failed", 60, what="failed after the crash loop")
    (gave_up,) = of_type(service, "sim-a", GaveUp)
    assert gave_up.crashes == 5
    assert types(service, "sim-a").count("StartIssued") == 5
    status = service.status_of("sim-a")
    assert status.dot == "red"
    assert status.reason is not None
    assert "5 failures" in status.reason
    wait_passes(service, 5)
    assert types(service, "sim-a").count("StartIssued") == 5, "a failed model must not be restarted"
    assert servers_of(service.settings, "sim-a") == []

    service.load("sim-a")
    wait_for_count(service, "sim-a", "StartIssued", 6, timeout_s=20)
    assert service.status_of("sim-a").restarts == 0
    assert of_type(service, "sim-a", StartIssued)[-1].attempt == 1


def test_unload_while_starting_stops_the_server_cleanly(service_with: ServiceFactory) -> None:
    service = service_with(sim_model("sim-a", startup_s=60))
    service.load("sim-a")
    wait_until(lambda: service.status_of("sim-a").phase == "starting", 20, what="starting")
    pid = int(of_type(service, "sim-a", StartIssued)[0].handle["ref"])
    service.unload("sim-a")
    status = service.wait("sim-a", "stopped", timeout_s=20)
    assert status.phase == "stopped"
    assert types(service, "sim-a") == [
        "LoadRequested",
        "StartIssued",
        "UnloadRequested",
        "StopIssued",
        "Stopped",
    ]
    assert of_type(service, "sim-a", Stopped)[0].reason == "unload"
    assert pid_gone(pid)
    assert servers_of(service.settings, "sim-a") == []
    assert not (service.settings.run_dir / service.settings.instance / "sim-a.pid").exists()


def test_a_failed_start_records_exit_code_3_and_the_log_tail(service_with: ServiceFactory) -> None:
    service = service_with(sim_model("sim-a", "--fail-start"))
    service.load("sim-a")
    wait_for_count(service, "sim-a", "StartFailed", 1, timeout_s=20)
    failed = of_type(service, "sim-a", StartFailed)[0]
    assert failed.exit_code == 3
    assert failed.reason == "exited before it was ready"
    assert "--fail-start" in failed.log_tail
    assert types(service, "sim-a")[:4] == ["LoadRequested", "StartIssued", "StartFailed", "RestartScheduled"]
    last_error = service.status_of("sim-a").last_error
    assert last_error is not None
    assert "exited with code 3" in last_error


def test_a_start_that_takes_too_long_is_stopped_and_retried(service_with: ServiceFactory) -> None:
    service = service_with(sim_model("sim-a", startup_s=60, startup_timeout_s=1))
    service.load("sim-a")
    wait_for_count(service, "sim-a", "RestartScheduled", 1, timeout_s=20)
    assert types(service, "sim-a")[:5] == [
        "LoadRequested",
        "StartIssued",
        "StopIssued",
        "StartFailed",
        "RestartScheduled",
    ]
    stop_issued = service.history("sim-a", limit=100)[::-1][2]
    assert stop_issued.event.reason == STARTUP_TIMEOUT  # type: ignore[attr-defined]
    failed = of_type(service, "sim-a", StartFailed)[0]
    assert failed.reason.startswith("not ready after 1 s")
    assert "503" in failed.reason  # the last probe's answer says why
    pid = int(of_type(service, "sim-a", StartIssued)[0].handle["ref"])
    assert pid_gone(pid)


def test_ten_concurrent_loads_start_one_server(service_with: ServiceFactory) -> None:
    service = service_with(sim_model("sim-a", startup_s=0.5))
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def click() -> None:
        try:
            barrier.wait()
            service.load("sim-a", actor="api")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=click) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert service.wait("sim-a", "ready", timeout_s=20).loaded
    wait_passes(service, 3)
    assert types(service, "sim-a") == ["LoadRequested", "StartIssued", "ReadyObserved"]
    assert len(of_type(service, "sim-a", LoadRequested)) == 1
    assert len(servers_of(service.settings, "sim-a")) == 1


def test_kicks_alone_drive_load_ready_crash_and_restart(service_with: ServiceFactory) -> None:
    """With the timer practically off, only wake-ups move things: the load's kick, the ready
    probe's, the process exit's and the restart's own wake-up at its due time."""
    service = service_with(
        sim_model("sim-a", "--crash-after-s", "1.5", startup_s=0.3), tick_s=60, fast_tick_s=60
    )
    service.load("sim-a")
    wait_for_types(service, "sim-a", LOADED_CRASHED_RESTARTED, timeout_s=20)
    second_start = [e for e in events(service, "sim-a") if e.type == "StartIssued"][1]
    assert second_start.ts >= of_type(service, "sim-a", RestartScheduled)[0].at


def test_the_projection_equals_the_fold_and_a_rebuild(service_with: ServiceFactory) -> None:
    service = service_with(sim_model("sim-a", "--crash-after-s", "1"), sim_model("sim-b", startup_s=0.2))
    service.load("sim-a")
    service.load("sim-b")
    wait_for_count(service, "sim-a", "RestartScheduled", 2, timeout_s=30)
    service.wait("sim-b", "ready", timeout_s=20)
    service.unload("sim-b")
    service.wait("sim-b", "stopped", timeout_s=20)
    before = service.store.model_states()
    assert service.store.rebuild_projection() == 2
    assert service.store.model_states() == before


# --- the wake-up mechanism itself ------------------------------------------------------------------


def test_single_flight_runs_one_pass_at_a_time_and_never_loses_a_kick() -> None:
    inside = threading.Event()
    release = threading.Event()
    passes: list[float] = []
    overlap: list[int] = []
    running = [0]

    def work() -> None:
        running[0] += 1
        overlap.append(running[0])
        passes.append(time.monotonic())
        if len(passes) == 1:
            inside.set()
            release.wait(10)
        running[0] -= 1

    flight = SingleFlight(work, name="test-flight")
    flight.start()
    try:
        flight.kick()
        assert inside.wait(5)
        # Kicks and timer runs while the first pass runs: none may run alongside, one must follow.
        for _ in range(5):
            flight.kick()
            flight.run()
        release.set()
        wait_until(lambda: len(passes) >= 2, 5, what="the pass owed to the kicks")
        kicked_at = time.monotonic()
        flight.kick()
        wait_until(lambda: passes[-1] >= kicked_at, 5, what="a pass after the last kick")
    finally:
        flight.close()
    assert max(overlap) == 1
