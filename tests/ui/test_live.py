"""The live parts' pacer (ui/live.py): fast while anything moves, slow at rest.

The decision is pure and tested on hand-made statuses; the frame's live parts are then run
by AppTest against a real service, and the pace each was given is read back from session
state (AppTest runs no timers, so there is nothing to wait for but the service itself).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import service_access
from lifecycle.core.status_view import ModelStatus
from tests.catalogs import external, sim_process
from tests.support import free_port, wait_until
from tests.ui.harness import no_exception, ui_env
from ui import live
from ui.chips import DIALOG_KEY
from ui.chips import LIVE_KEY as CHIPS
from ui.live import FAST_S, IDLE_S, REST_S, in_motion, interval, model_in_motion
from ui.model_dialog import LIVE_KEY as DIALOG

BASE = ModelStatus(
    id="m", name="M", url="http://127.0.0.1:9", served_model="m", engine="llamacpp", runtime="process",
    size=None, format=None, supports_tools=False, simulated=True, loaded=False, available=True,
    can_load=True, phase="stopped", desired="unloaded", since=None, restarts=0, last_error=None,
    status="Available (Not Loaded)", dot="red", reason=None, usual_load_s=None, manual_start=None,
)  # fmt: skip


@pytest.mark.parametrize(
    ("phase", "desired", "fields", "moving"),
    [
        ("stopped", "unloaded", {}, False),  # at rest, not loaded
        ("ready", "loaded", {"loaded": True}, False),  # at rest, loaded
        ("stopped", "loaded", {}, True),  # asked to load, not started yet
        ("starting", "loaded", {}, True),
        ("ready", "unloaded", {}, True),  # asked to unload, not stopping yet
        ("starting", "unloaded", {}, True),  # a load cancelled while starting
        ("stopping", "unloaded", {}, True),
        ("crashed", "loaded", {}, True),
        ("backoff", "loaded", {}, True),  # a restart is scheduled
        ("failed", "loaded", {}, False),  # nothing more happens until a click
        ("stopped", "loaded", {"available": False}, False),  # offline: nothing can start
        ("ready", "unloaded", {"can_load": False, "runtime": "external"}, False),  # not ours
    ],
)
def test_a_model_moves_while_it_is_on_its_way_somewhere(
    phase: str, desired: str, fields: dict[str, Any], moving: bool
) -> None:
    assert model_in_motion(replace(BASE, phase=phase, desired=desired, **fields)) is moving


def test_anything_moving_means_a_model_on_its_way() -> None:
    rest = [BASE, replace(BASE, id="r", phase="ready", desired="loaded", loaded=True)]
    assert not in_motion(rest)
    assert in_motion([*rest, replace(BASE, id="s", phase="starting", desired="loaded")])
    assert not in_motion([])


def test_the_pace_is_fast_while_moving_and_slow_at_rest() -> None:
    assert interval(True) == FAST_S
    assert interval(False) == IDLE_S
    # At rest the pacer redraws the part on its own tick, so that tick must stay the slowest
    # one a part shows (an idle tab costs nothing), and the fast one must be fast enough for
    # a ready moment to show within 300 ms.
    assert REST_S >= 1.0
    assert IDLE_S >= REST_S
    assert FAST_S <= 0.15


def paces(at: Any) -> dict[str, float | None]:
    return {key: at.session_state[live.PACE_KEY_PREFIX + key] for key in (CHIPS, DIALOG)}


def test_the_chips_and_the_dialog_go_fast_while_a_model_loads_and_slow_once_it_is_ready(
    tmp_path: Path,
) -> None:
    with ui_env(
        tmp_path, sim_process("sim-a", free_port(), startup_s=2), external("ext", free_port())
    ) as env:
        at = no_exception(env.app(**{DIALOG_KEY: "sim-a"}))
        assert paces(at) == {CHIPS: IDLE_S, DIALOG: IDLE_S}

        at.button(key="dialog-load").click().run()  # the click's own run already sees it move
        assert paces(no_exception(at)) == {CHIPS: FAST_S, DIALOG: FAST_S}

        wait_until(lambda: env.status("sim-a").loaded, 30, what="sim-a ready")
        assert paces(no_exception(at.run())) == {CHIPS: IDLE_S, DIALOG: IDLE_S}


def test_a_benchmark_run_in_progress_leaves_the_pace_at_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its bars refresh every second: a faster pace would take CPU from the measurement."""

    class Jobs:
        def active(self) -> list[dict[str, str]]:
            return [{"run_id": "r1", "state": "running"}]

        def busy(self, model_id: str) -> bool:
            return True

    monkeypatch.setattr(service_access, "get_benchmarks", lambda: (Jobs(), None))
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        at = no_exception(env.app())
        assert at.session_state[live.PACE_KEY_PREFIX + CHIPS] == IDLE_S
