"""The restart and stop settings, end to end: each figure, given as settings or as DXG_* environment
variables, changes what the real reconciler does to real simulator processes.

The figures are chosen so that a policy ignoring them (2 s, doubling, 60 s cap, 5 failures in
10 min, a 10 s stop grace) fails every test here. Times are read from the recorded events (stored
to the ms) and bounded on both sides: never early, and late by less than a margin that holds on a
loaded 2-core machine. Waits are on recorded events and reconciler passes, never on sleeps.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Final

import pytest

from db.migrate import upgrade_to_head
from lifecycle.core.events import (
    Crashed,
    GaveUp,
    ReadyObserved,
    RecordedEvent,
    RestartScheduled,
    StartFailed,
    StartIssued,
    StopIssued,
    Stopped,
)
from lifecycle.runtimes.logfile import log_path
from lifecycle.service import LifecycleService
from settings import Settings
from simulator.events import parse_event
from tests.catalogs import write_catalog
from tests.integration.lifecycle_env import (
    events,
    of_type,
    running_service,
    servers_of,
    sim_model,
    types,
    wait_passes,
)
from tests.settings_support import FAST, make_settings
from tests.support import wait_until

MODEL: Final = "sim-r"
SOURCES: Final = ("settings", "env")
# A restart may come this much after its figure (noticing the exit, a wake-up, a pass, a process spawn)
# on a busy box (0.13 s at most seen with two CPU burners on 2 cores). Small enough that timing alone
# catches any one figure ignored: the 2 s default, a first delay of 0.6 instead of 0.2 (initial_s
# ignored, cap kept), 0.4 instead of 0.6 (factor 2) or 1.8 instead of 0.6 (no cap).
LATE_MARGIN_S: Final = 0.4
# A stop may end this much after its grace period (SIGKILL, reaping, recording, the waiter noticing).
STOP_MARGIN_S: Final = 1.0
# Crashed is stored when the pass that saw the exit records it, which may be this much after the
# moment the pass judged the crash and from which the restart delay counts (35 ms seen under load).
PASS_LAG_S: Final = 0.25
# Long enough for the simulator to be ready before it crashes even on a loaded machine, so every
# failure is a Crashed (a start that dies before ready is a StartFailed instead).
CRASH_AFTER_S: Final = 1.5


def configured(
    source: str, base: Settings, catalog: Path, monkeypatch: pytest.MonkeyPatch, **values: Any
) -> Settings:
    """Settings with ``values`` over the fast test figures: given directly (as
    ``settings_support.make_settings`` does) or read by ``Settings()`` from DXG_* variables."""
    if source == "settings":
        return make_settings(base, catalog, **values)
    fields = {
        "catalog": catalog,
        "db_url": base.db_url,
        "log_dir": base.log_dir,
        "run_dir": base.run_dir,
        **FAST,
        **values,
    }
    for name, value in fields.items():
        monkeypatch.setenv(f"DXG_{name.upper()}", str(value))
    settings = Settings()
    assert {name: getattr(settings, name) for name in fields} == fields
    upgrade_to_head(settings.db_url)
    return settings


def catalog_of(tmp_path: Path, *sim_args: str) -> Path:
    return write_catalog(tmp_path / "models.yaml", sim_model(MODEL, *sim_args))


def failures(service: LifecycleService) -> list[str]:
    """The model's failure events so far, oldest first."""
    return [t for t in types(service, MODEL) if t in ("Crashed", "StartFailed")]


def after(recorded: list[RecordedEvent], index: int, event_type: type) -> RecordedEvent:
    """The first event of ``event_type`` after position ``index`` in ``recorded``."""
    return next(e for e in recorded[index + 1 :] if isinstance(e.event, event_type))


# --- restart_initial_s, restart_factor, restart_max_s -------------------------------------------------

RESTART: Final[dict[str, Any]] = {
    "restart_initial_s": 0.2,
    "restart_factor": 3,
    "restart_max_s": 0.6,
    "crash_limit": 10,  # never gives up within this test
}
# 0.2, then 0.2 x 3 = 0.6, then 0.6 x 3 capped at 0.6.
DELAYS: Final = (0.2, 0.6, 0.6)


@pytest.mark.parametrize("source", SOURCES)
def test_restart_delays_follow_initial_factor_and_cap(
    source: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = catalog_of(tmp_path, "--crash-after-s", str(CRASH_AFTER_S))
    config = configured(source, settings, catalog, monkeypatch, **RESTART)
    with running_service(config) as service:
        service.load(MODEL)
        wait_until(
            lambda: types(service, MODEL).count("StartIssued") > len(DELAYS) or failures(service)[3:],
            40,
            what=f"{len(DELAYS)} restarts of {MODEL} (have {types(service, MODEL)})",
        )
        recorded = events(service, MODEL)

    cycle = ["StartIssued", "ReadyObserved", "Crashed", "RestartScheduled"]
    assert [e.type for e in recorded][: 2 + 4 * len(DELAYS)] == ["LoadRequested", *cycle * 3, "StartIssued"]
    crashes = [i for i, e in enumerate(recorded) if isinstance(e.event, Crashed)][: len(DELAYS)]
    exits = sim_crash_moments(config)
    from_exit, from_event = [], []
    for n, (index, figure, exited) in enumerate(zip(crashes, DELAYS, exits, strict=False)):
        crash = recorded[index]
        scheduled = recorded[index + 1].event
        start = after(recorded, index, StartIssued)
        assert isinstance(scheduled, RestartScheduled)
        assert scheduled.delay_s == figure, f"restart {n + 1}"
        assert scheduled.attempt == start.event.attempt == n + 2  # type: ignore[attr-defined]
        assert start.ts >= scheduled.at, f"restart {n + 1} started before it was due"
        assert exited <= crash.ts
        # Never early: the delay counts from the moment a pass saw the exit, which is after the exit.
        gap = round(start.ts - exited, 3)
        from_exit.append(gap)
        assert figure <= gap < figure + LATE_MARGIN_S, f"restart {n + 1}: {gap} s after the exit"
        gap = round(start.ts - crash.ts, 3)
        from_event.append(gap)
        assert figure - PASS_LAG_S <= gap < figure + LATE_MARGIN_S, f"restart {n + 1}: {gap} s after Crashed"
    assert len(from_exit) == len(DELAYS), f"the simulator logged {len(exits)} crashes"
    ready = [e.event.load_duration_s for e in recorded if isinstance(e.event, ReadyObserved)]
    print(
        f"restart delays ({source}): wanted {list(DELAYS)}, from the exit {from_exit}, "
        f"from Crashed {from_event}; ready after {ready} s"
    )


def sim_crash_moments(settings: Settings) -> list[float]:
    """When the simulator crashed, as it wrote in its log just before exiting (epoch seconds)."""
    text = log_path(settings.log_dir, MODEL).read_text(errors="replace")
    logged = [parse_event(line) for line in text.splitlines()]
    return [ev.t for ev in logged if ev is not None and ev.name == "crash"]


# --- crash_limit and crash_window_s -------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_crash_limit_gives_up_after_exactly_that_many_failures(
    source: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = catalog_of(tmp_path, "--fail-start")
    config = configured(
        source, settings, catalog, monkeypatch, crash_limit=3, crash_window_s=60.0, restart_initial_s=0.05
    )
    with running_service(config) as service:
        service.load(MODEL)
        wait_until(
            lambda: service.status_of(MODEL).phase == "failed" or failures(service)[5:],
            30,
            what=f"{MODEL} failed after its crash loop (have {types(service, MODEL)})",
        )
        assert service.status_of(MODEL).phase == "failed", types(service, MODEL)
        assert failures(service) == ["StartFailed"] * 3, "gave up after other than crash_limit failures"
        (gave_up,) = of_type(service, MODEL, GaveUp)
        assert gave_up.crashes == 3
        assert gave_up.reason.startswith("3 failures within 1 min")  # crash_window_s=60, as span() words it
        wait_passes(service, 5)
        assert types(service, MODEL).count("StartIssued") == 3, "a failed model must not be restarted"
        assert types(service, MODEL)[-2:] == ["StartFailed", "GaveUp"]
        assert len(of_type(service, MODEL, RestartScheduled)) == 2
        assert servers_of(service.settings, MODEL) == []


def test_failures_further_apart_than_the_crash_window_never_add_up(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """crash_limit=2, but each restart waits longer than the 1 s window: every failure is alone in
    the window, so three failures in a row never give up (with a 10 min window the second would)."""
    catalog = catalog_of(tmp_path, "--fail-start")
    window, delay, count = 1.0, 1.2, 3
    config = configured(
        "settings",
        settings,
        catalog,
        monkeypatch,
        crash_limit=2,
        crash_window_s=window,
        restart_initial_s=delay,
        restart_factor=1.0,
        restart_max_s=delay,
    )
    with running_service(config) as service:
        service.load(MODEL)
        wait_until(
            lambda: len(failures(service)) >= count or "GaveUp" in types(service, MODEL),
            30,
            what=f"{count} failures of {MODEL} (have {types(service, MODEL)})",
        )
        recorded = events(service, MODEL)
        assert "GaveUp" not in types(service, MODEL)
        assert service.status_of(MODEL).phase != "failed"
    failed = [e for e in recorded if isinstance(e.event, StartFailed)]
    assert len(failed) >= count
    gaps = [round(b.ts - a.ts, 3) for a, b in itertools.pairwise(failed)]
    assert all(gap >= window for gap in gaps), gaps  # the premise: each failure is alone in the window
    delays = [e.event.delay_s for e in recorded if isinstance(e.event, RestartScheduled)]
    assert delays[:count] == [delay] * count
    print(f"crash window {window} s: failures {gaps} s apart, no GaveUp")


# --- stop_grace_s -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("grace", "source"), [(1.0, "settings"), (3.0, "settings"), (1.0, "env")])
def test_a_server_ignoring_sigterm_is_killed_after_stop_grace_s(
    grace: float, source: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = catalog_of(tmp_path, "--ignore-sigterm")
    config = configured(source, settings, catalog, monkeypatch, stop_grace_s=grace)
    with running_service(config) as service:
        service.load(MODEL)
        assert service.wait(MODEL, "ready", timeout_s=20).phase == "ready"
        began = time.monotonic()
        service.unload(MODEL)
        status = service.wait(MODEL, "stopped", timeout_s=grace + 15)
        took = time.monotonic() - began
        assert status.phase == "stopped"
        recorded = events(service, MODEL)
        log = service.logs(MODEL, tail=50)
    issued = next(e for e in recorded if isinstance(e.event, StopIssued))
    stopped = next(e for e in recorded if isinstance(e.event, Stopped))
    recorded_took = round(stopped.ts - issued.ts, 3)
    print(f"stop_grace_s={grace} ({source}): unload took {took:.3f} s, StopIssued->Stopped {recorded_took} s")
    assert grace <= took < grace + STOP_MARGIN_S
    assert grace <= recorded_took < grace + STOP_MARGIN_S
    assert stopped.event.exit_code == 137  # type: ignore[attr-defined]  # SIGKILL, not its own exit
    assert f"still running after {grace:g}s: SIGKILL" in log
