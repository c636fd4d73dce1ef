"""What the planner needs to remember beyond the projection: recent failures and load times.

Pure: a left fold over one model's recorded events, like the projection, but keeping the
restart record (failure times, the backoff streak, the pending restart's time) and the
recent load durations behind "usually 1:10". Derived from events only, so a restarted app
continues the same backoff and the same give-up count.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from lifecycle.core.events import (
    Adopted,
    Crashed,
    LoadRequested,
    ReadyObserved,
    RecordedEvent,
    RestartScheduled,
    StartFailed,
    StartIssued,
    Unhealthy,
    UnloadRequested,
)
from lifecycle.core.policy import RestartPolicy
from lifecycle.core.projection import ModelState, apply
from lifecycle.core.states import UNLOADED, Phase

# Enough load times for a stable median, few enough that old hardware setups fade out.
LOAD_SAMPLES: Final = 20


@dataclass(frozen=True)
class PlannerMemory:
    """One model's restart memory and load times, as of stream version ``version``."""

    version: int = 0
    state: ModelState | None = None  # the projection after the same events (the fold needs "before")
    failures: tuple[float, ...] = ()  # Crashed / StartFailed times since the last fresh load
    streak: int = 0  # failures in a row without a long enough ready spell in between
    restart_at: float | None = None  # when the pending restart is due
    unload_reason: str = "user"  # reason of the last UnloadRequested
    load_durations: tuple[float, ...] = ()  # of starts we issued, oldest first
    adopted: bool = False  # the current server was adopted: its "load time" is not one

    @property
    def usual_load_s(self) -> float | None:
        return statistics.median(self.load_durations) if self.load_durations else None


def _ready_for(before: ModelState | None, ts: float) -> float | None:
    if before is None or before.phase != Phase.READY or before.since is None:
        return None
    return ts - before.since


def _step(memory: PlannerMemory, recorded: RecordedEvent, policy: RestartPolicy) -> PlannerMemory:
    before = memory.state
    event = recorded.event
    ts = recorded.ts
    changes: dict[str, object] = {}
    match event:
        case LoadRequested():
            # The projection's notion of a fresh load: the user starts over after failed or unloaded.
            if before is None or before.desired == UNLOADED or before.phase == Phase.FAILED:
                changes.update(failures=(), streak=0, restart_at=None)
        case UnloadRequested(reason=reason):
            changes["unload_reason"] = reason
        case Crashed() | Unhealthy():
            changes["streak"] = policy.next_streak(memory.streak, _ready_for(before, ts))
            changes["failures"] = (*memory.failures, ts)
        case StartFailed():
            changes["streak"] = memory.streak + 1
            changes["failures"] = (*memory.failures, ts)
        case RestartScheduled(at=at):
            changes["restart_at"] = at
        case StartIssued():
            changes["adopted"] = False
        case Adopted():
            changes["adopted"] = True
        case ReadyObserved(load_duration_s=duration) if not memory.adopted:
            changes["load_durations"] = (*memory.load_durations, duration)[-LOAD_SAMPLES:]
        case _:
            pass
    failures = changes.get("failures", memory.failures)
    if isinstance(failures, tuple):
        # Failures older than the window never count again: drop them so the tuple stays short.
        changes["failures"] = tuple(t for t in failures if ts - t < policy.crash_window_s)
    return replace(memory, **changes, state=apply(before, recorded), version=recorded.version)


def fold_memory(
    events: Iterable[RecordedEvent], policy: RestartPolicy, memory: PlannerMemory | None = None
) -> PlannerMemory:
    """``memory`` advanced by ``events`` (one model stream, in version order)."""
    memory = memory or PlannerMemory()
    for recorded in events:
        memory = _step(memory, recorded, policy)
    return memory
