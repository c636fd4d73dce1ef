"""Decide what to do about one model: desired x observed x restart memory x now -> actions.

Pure: no I/O and no clock of its own, so every rule is a table-driven unit test. The
reconciler gathers the inputs (the projection, a fresh ``inspect`` and ready probe, the
memory folded from events), calls ``plan`` and carries the actions out, each one as an event.

Actions come in the order they are recorded. All but ``Start`` and ``Stop`` are facts or
decisions appended at once; ``Start`` and ``Stop`` take time (compose up, docker stop with a
grace period), so the reconciler runs them off the tick and records their outcome when done.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from lifecycle.core.memory import PlannerMemory
from lifecycle.core.policy import RestartPolicy
from lifecycle.core.projection import ModelState
from lifecycle.core.states import LOADED, RUNNING, Phase

# Stop reasons as recorded in StopIssued / Stopped.
REMOVED: Final = "removed"
IDLE: Final = "idle"  # nothing used it for its idle_ttl_s
STARTUP_TIMEOUT: Final = "startup timeout"
UNWANTED: Final = "adopt-unwanted"


# --- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the catalog says about a model the planner needs; None means "removed from the catalog"."""

    startup_timeout_s: float
    idle_ttl_s: float | None = None  # unload once unused this long; None: never


@dataclass(frozen=True)
class Observed:
    """A fresh look at the model's server (only taken while a server of ours may exist)."""

    running: bool
    exit_code: int | None = None
    oom: bool = False
    ready: bool = False  # the engine's ready probe passed
    probe_reason: str = ""  # the last probe's words, for a startup timeout's message
    known: bool = True  # False: the runtime could not tell (Docker unreachable); never act on it
    # Why a ready server counts as hung (its liveness probe failed often enough in a row), if it does.
    unhealthy: str | None = None
    liveness_failures: int = 0
    # Something uses the ready server right now (a request, a chat stream, a benchmark run).
    busy: bool = False
    last_used: float | None = None  # when its last use ended; None: not used since the app started

    @classmethod
    def unknown(cls, reason: str) -> Observed:
        return cls(running=False, known=False, probe_reason=reason)


# --- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    attempt: int


@dataclass(frozen=True)
class Stop:
    """Stop the server (the state's, or ``handle``). ``announce`` records StopIssued first (False
    when an earlier stop already did); ``failure`` records StartFailed instead of Stopped."""

    reason: str
    announce: bool = True
    failure: str | None = None
    handle: dict[str, Any] | None = None


@dataclass(frozen=True)
class MarkReady:
    load_duration_s: float


@dataclass(frozen=True)
class MarkCrashed:
    exit_code: int | None
    oom: bool = False


@dataclass(frozen=True)
class StartFailed:
    reason: str
    exit_code: int | None = None


@dataclass(frozen=True)
class MarkUnhealthy:
    """Record that a ready server hangs; the reconciler kills it (as it clears a crash's remains)."""

    reason: str
    failures: int


@dataclass(frozen=True)
class ScheduleRestart:
    delay_s: float
    attempt: int  # the start attempt the restart will be
    at: float


@dataclass(frozen=True)
class GiveUp:
    reason: str
    crashes: int


@dataclass(frozen=True)
class MarkStopped:
    reason: str
    exit_code: int | None = None


@dataclass(frozen=True)
class RequestUnload:
    """The reconciler asks for an unload itself: the model left the catalog, or sat idle."""

    reason: str


@dataclass(frozen=True)
class Adopt:
    handle: dict[str, Any]


Action = (
    Start
    | Stop
    | MarkReady
    | MarkCrashed
    | MarkUnhealthy
    | StartFailed
    | ScheduleRestart
    | GiveUp
    | MarkStopped
    | RequestUnload
)
SLOW_ACTIONS: Final = (Start, Stop)


# --- the plan ------------------------------------------------------------------------------------


def stop_reason(unload_reason: str) -> str:
    """The Stopped reason for an unload: the user's is plain "unload", the others keep their word."""
    return "unload" if unload_reason == "user" else unload_reason


def span(seconds: float) -> str:
    """``600`` -> ``"10 min"``, ``2.5`` -> ``"2.5 s"``: durations in messages people read."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def plan(
    state: ModelState,
    target: Target | None,
    observed: Observed | None,
    memory: PlannerMemory,
    now: float,
    policy: RestartPolicy,
) -> list[Action]:
    """The actions that move ``state`` towards what the user asked for.

    ``target`` is None for a model no longer in the catalog; ``observed`` is None when no
    server of ours should exist (phases stopped, crashed, backoff, failed).
    """
    wanted = state.desired == LOADED
    reason = stop_reason(memory.unload_reason)
    prefix: list[Action] = []
    if target is None and wanted:
        prefix = [RequestUnload(REMOVED)]
        wanted, reason = False, REMOVED
    return prefix + _Situation(state, memory, now, policy, wanted, reason).plan(target, observed)


def _idle_too_long(target: Target, seen: Observed, ready_since: float, now: float) -> bool:
    ttl = target.idle_ttl_s
    if not ttl or seen.busy:
        return False
    # Idle from its last use, or from when it became ready if nothing has used it since.
    idle_since = max(ready_since, seen.last_used or 0.0)
    return now - idle_since >= ttl


@dataclass(frozen=True)
class _Situation:
    """The inputs every rule reads, plus what ``plan`` concluded: is the model wanted, and if
    not, the reason a stop is recorded under."""

    state: ModelState
    memory: PlannerMemory
    now: float
    policy: RestartPolicy
    wanted: bool
    reason: str

    def plan(self, target: Target | None, observed: Observed | None) -> list[Action]:
        state, now = self.state, self.now
        phase = state.phase
        since = now if state.since is None else state.since
        if phase in RUNNING:
            seen = observed or Observed(running=False)
            if not seen.known:
                return []  # a restart on a guess could start a duplicate
            if not seen.running:
                return self._gone(seen)
            if not self.wanted or phase == Phase.STOPPING:
                # A stopping phase without a stop in flight: an earlier run of the app began it.
                return [Stop(self.reason, announce=phase != Phase.STOPPING)]
            if phase == Phase.READY and seen.unhealthy is not None:
                ready_for = None if state.since is None else now - state.since
                hung = MarkUnhealthy(seen.unhealthy, seen.liveness_failures)
                return [hung, *self._after_failure(new_failure=True, ready_for=ready_for)]
            if phase == Phase.READY and target is not None and _idle_too_long(target, seen, since, now):
                return [RequestUnload(IDLE)]
            if phase == Phase.STARTING:
                if seen.ready:
                    return [MarkReady(round(now - since, 3))]
                if target is not None and now - since >= target.startup_timeout_s:
                    why = f"not ready after {span(target.startup_timeout_s)}"
                    failure = f"{why} ({seen.probe_reason})" if seen.probe_reason else why
                    return [Stop(STARTUP_TIMEOUT, failure=failure)]
            return []
        if not self.wanted:
            return []  # idle phases of an unwanted model: nothing runs, nothing to do
        if phase == Phase.CRASHED:
            return self._after_failure(new_failure=False, ready_for=None)
        restart_at = self.memory.restart_at
        if phase == Phase.BACKOFF and (restart_at is None or now >= restart_at):
            return [Start(state.restarts + 1)]
        if phase == Phase.STOPPED:
            return [Start(state.restarts + 1)]
        return []  # backoff not yet due, or failed until the user loads again

    def _gone(self, seen: Observed) -> list[Action]:
        """The server is no longer there: a stop that finished, a failed start or a crash."""
        state = self.state
        if state.phase == Phase.STOPPING or not self.wanted:
            return [MarkStopped(self.reason, seen.exit_code)]
        if state.phase == Phase.STARTING:
            failed: Action = StartFailed("exited before it was ready", seen.exit_code)
            ready_for = None
        else:
            failed = MarkCrashed(seen.exit_code, seen.oom)
            ready_for = None if state.since is None else self.now - state.since
        return [failed, *self._after_failure(new_failure=True, ready_for=ready_for)]

    def _after_failure(self, *, new_failure: bool, ready_for: float | None) -> list[Action]:
        """Restart after a backoff, or give up when failures come too often."""
        memory, now, policy = self.memory, self.now, self.policy
        failures = (*memory.failures, now) if new_failure else memory.failures
        streak = policy.next_streak(memory.streak, ready_for) if new_failure else max(1, memory.streak)
        recent = policy.recent(failures, now)
        if len(recent) >= policy.crash_limit:
            why = f"{len(recent)} failures within {span(policy.crash_window_s)}; load it again to retry"
            return [GiveUp(why, len(recent))]
        delay = policy.delay(streak)
        return [ScheduleRestart(delay, self.state.restarts + 2, round(now + delay, 3))]


# --- adoption ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdoptionPlan:
    """What to do with the servers an earlier app run left behind for one model, in order:
    stop the unwanted ones (``Stop`` with their handle), then ``Adopt`` the one kept, if any."""

    model_id: str
    actions: tuple[Stop | Adopt, ...] = field(default=())


def plan_adoption(
    states: Mapping[str, ModelState], found: Sequence[Mapping[str, Any]], loadable: Collection[str]
) -> list[AdoptionPlan]:
    """Keep one running leftover per model that is still wanted; stop every other one.

    ``found`` are the running servers the runtimes report as ours (handle JSON); ``loadable``
    the catalog's ids the app can start. The server the projection already names wins over
    others of the same model, then the newest one: never two servers for one model.
    """
    by_model: dict[str, list[dict[str, Any]]] = {}
    for handle in found:
        by_model.setdefault(str(handle["model_id"]), []).append(dict(handle))
    plans: list[AdoptionPlan] = []
    for model_id, handles in sorted(by_model.items()):
        state = states.get(model_id)
        wanted = (
            state is not None
            and state.desired == LOADED
            and state.phase != Phase.FAILED
            and model_id in loadable
        )
        known_ref = (state.handle or {}).get("ref") if state is not None else None
        ranked = sorted(
            handles, key=lambda h: (h.get("ref") == known_ref, float(h["started_at"])), reverse=True
        )
        keep = ranked[0] if wanted else None
        stops: list[Stop | Adopt] = [Stop(UNWANTED, handle=h) for h in ranked if h is not keep]
        plans.append(AdoptionPlan(model_id, (*stops, Adopt(keep)) if keep is not None else tuple(stops)))
    return plans


def transitional(state: ModelState) -> bool:
    """Whether a model is in a phase the reconciler should look at more often."""
    return state.phase in (Phase.STARTING, Phase.STOPPING, Phase.CRASHED) or (
        state.desired == LOADED and state.phase == Phase.STOPPED
    )
