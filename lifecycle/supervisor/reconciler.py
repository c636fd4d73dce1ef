"""Keeps the actual servers matching what the user asked for: plans with ``planner``, acts
through the runtimes, and records every action as an event.

Level-based: each pass reads the projection, looks at every server of ours afresh
(``inspect``; the latest ready probe while starting) and never trusts an earlier event about
it. Passes run from an APScheduler job every ``fast_tick_s`` (a full pass is due every
``tick_s``, or every ``fast_tick_s`` while anything is in motion) and at once on a kick: load
and unload, a process exit, a Docker die/oom event, a ready probe that passed, or a finished
start or stop (see ``wakeup``).

Nothing in a pass waits on a server. Starts and stops, which may take long (compose up, docker
stop with its grace period), run on a small thread pool with at most one action per model in
flight, and their outcome is recorded when they end. A model with an action in flight is left
out of passes until it ends.

Two kinds of appends:
- decisions (ReadyObserved, Crashed, RestartScheduled, StopIssued, ...) were planned from the
  state at one version and append with that version; on ConcurrencyConflict the plan is
  dropped and the next pass plans again from fresh state;
- outcomes of actions that already happened (StartIssued with the new server's handle,
  Stopped) must never be lost, so they re-read the version and retry.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final

from apscheduler.schedulers.background import BackgroundScheduler

from db.store import ConcurrencyConflict, EventStore
from lifecycle.activity import Activity
from lifecycle.catalog import Catalog, ModelSpec, RuntimeKind
from lifecycle.catalog.watch import CatalogHolder
from lifecycle.core import planner
from lifecycle.core.events import (
    Adopted,
    Crashed,
    Event,
    GaveUp,
    ReadyObserved,
    RestartScheduled,
    StartFailed,
    StartIssued,
    StopIssued,
    Stopped,
    Unhealthy,
    UnloadRequested,
    model_stream,
)
from lifecycle.core.planner import AdoptionPlan, Observed, Start, Stop, Target, plan, plan_adoption
from lifecycle.core.policy import RestartPolicy
from lifecycle.core.projection import ModelState
from lifecycle.core.states import LOADED, RUNNING, UNLOADED, Phase
from lifecycle.core.values import Handle
from lifecycle.observe.liveness import LivenessWatch, LiveProbe
from lifecycle.observe.probes import ReadyProbe, probe_live, probe_ready
from lifecycle.observe.readiness import ReadinessWatch
from lifecycle.runtimes import logfile
from lifecycle.runtimes.protocol import Runtime, RuntimeFailure
from lifecycle.runtimes.registry import Runtimes
from lifecycle.supervisor.memory_cache import MemoryCache
from lifecycle.supervisor.wakeup import ChangeSignal, SingleFlight
from settings import Settings

log = logging.getLogger(__name__)

ACTOR: Final = "reconciler"
SHUTDOWN: Final = "shutdown"
ACTION_WORKERS: Final = 4
ROTATE_EVERY_S: Final = 60.0
ADOPT_PROBE_TIMEOUT_S: Final = 1.0
ADOPT_WAIT_S: Final = 30.0

PeriodicJob = tuple[str, float, Callable[[], None]]  # id, interval, function
# Recorded outcomes after which the server's remains are cleared (a hung one is killed).
DEAD_OR_HUNG: Final = (planner.MarkCrashed, planner.StartFailed, planner.MarkUnhealthy)


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        runtimes: Runtimes,
        catalog: CatalogHolder,
        memories: MemoryCache,
        policy: RestartPolicy,
        changes: ChangeSignal,
        *,
        clock: Callable[[], float] = time.time,
        probe: ReadyProbe = probe_ready,
        live_probe: LiveProbe = probe_live,
        activity: Activity | None = None,
    ) -> None:
        self._settings = settings
        self._activity = activity or Activity(clock)
        self._store = store
        self._runtimes = runtimes
        self._catalog = catalog
        self._memories = memories
        self._policy = policy
        self._changes = changes
        self._clock = clock
        self._flight = SingleFlight(self._pass, name="dxg-reconciler")
        self._probe = probe
        self._readiness = ReadinessWatch(self.kick, probe=probe)
        self._liveness = LivenessWatch(
            self.kick,
            period_s=settings.liveness_period_s,
            timeout_s=settings.liveness_timeout_s,
            probe=live_probe,
        )
        self._actions = ThreadPoolExecutor(ACTION_WORKERS, thread_name_prefix="dxg-action")
        self._inflight: dict[str, Future[None]] = {}
        self._inflight_lock = threading.Lock()
        # Model id -> why its server could not be inspected on the last pass (read by status views).
        self._unobservable: dict[str, str] = {}
        self._accepting = True
        self._adoption_pending = True
        self._scheduler: BackgroundScheduler | None = None
        self._next_due = 0.0  # time.monotonic() of the next full pass
        self._wakes: dict[str, float] = {}  # model id -> the restart time a wake-up is set for
        self.passes = 0  # for tests and diagnostics

    # --- driving -----------------------------------------------------------------------------

    def start(self, jobs: Sequence[PeriodicJob] = ()) -> None:
        """Start passes: the scheduler's timer, the kick thread, and the process exit callback."""
        # The timer fires every fast_tick_s; at INFO APScheduler would log each run.
        logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
        self._runtimes.set_on_exit(self._on_exit)
        self._flight.start()
        scheduler = BackgroundScheduler(daemon=True, timezone=UTC)
        every = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(
            self._on_timer,
            "interval",
            seconds=self._settings.fast_tick_s,
            id="reconcile",
            next_run_time=datetime.now(UTC),
            **every,
        )
        scheduler.add_job(self.rotate_logs, "interval", seconds=ROTATE_EVERY_S, id="rotate-logs", **every)
        for job_id, seconds, func in jobs:
            scheduler.add_job(func, "interval", seconds=seconds, id=job_id, **every)
        scheduler.start()
        self._scheduler = scheduler
        self.kick()

    @property
    def running(self) -> bool:
        return self._scheduler is not None and self._scheduler.running

    def kick(self) -> None:
        """Run a pass as soon as possible, without waiting for it."""
        if self._accepting:
            self._flight.kick()

    def _on_timer(self) -> None:
        if time.monotonic() >= self._next_due:
            self._flight.run()

    def _on_exit(self, model_id: str, exit_code: int | None) -> None:
        self.kick()

    # --- one pass ----------------------------------------------------------------------------

    def _pass(self) -> None:
        if not self._accepting:
            return
        # Taken before the projection is read: a model whose action ends after this point is
        # still skipped, so no pass ever plans from a state older than that action's outcome.
        busy = self._busy()
        now = self._clock()
        states = self._store.model_states()
        catalog, good = self._catalog.catalog, self._catalog.good
        acted = False
        # Servers on their way out still hold their memory: a model admitted by memory (it may
        # have evicted them) starts once they are gone, or it could run out of memory.
        freeing = {m for m, s in states.items() if s.desired == UNLOADED and s.phase in RUNNING}
        for model_id, state in states.items():
            if model_id in busy:
                continue
            spec = catalog.get(model_id)
            if spec is None and not good:
                continue  # not "removed": the catalog just can't be read yet
            try:
                wait = bool(freeing - {model_id})
                acted = self._reconcile(state, spec, now, waiting_for_memory=wait) or acted
            except Exception:  # one broken model must not stop the others being looked after
                log.exception("reconciling %s failed", model_id)
        starting = {m for m, s in states.items() if s.phase == Phase.STARTING}
        self._readiness.retain(starting | self._busy())
        self._liveness.retain({m for m, s in states.items() if s.phase == Phase.READY})
        self._next_due = self._due(states, now)
        self.passes += 1
        if acted:
            # What this pass recorded (a crash, a scheduled restart) is planned on at once, from
            # the new state, rather than a tick later.
            self.kick()

    def _busy(self) -> set[str]:
        with self._inflight_lock:
            return set(self._inflight)

    def liveness(self, model_id: str) -> tuple[int, str]:
        """Liveness probes of the model's ready server failed in a row so far, and the last reason."""
        live = self._liveness.failures(model_id)
        return live.failures, live.reason

    def _seen(self, model_id: str, unobservable: str | None) -> None:
        """Note whether the model's server could be inspected; a change moves the change count,
        so readers that keep statuses (the gateway) stop routing to a server nobody can see."""
        before = self._unobservable.get(model_id)
        if unobservable is None:
            self._unobservable.pop(model_id, None)
        else:
            self._unobservable[model_id] = unobservable
        if before != unobservable:
            self._changes.notify()

    def unobservable(self, model_id: str) -> str | None:
        """Why the model's server could not be seen on the last pass (its engine or node is
        down), or None: its record may still say ready, but nobody can tell."""
        return self._unobservable.get(model_id)

    def acting_on(self, model_id: str) -> bool:
        """A start or stop for the model is under way (its outcome is not recorded yet)."""
        with self._inflight_lock:
            return model_id in self._inflight

    def _reconcile(
        self, state: ModelState, spec: ModelSpec | None, now: float, *, waiting_for_memory: bool = False
    ) -> bool:
        """Plan and act for one model; True when it recorded something."""
        managed = spec if spec is not None and spec.can_load else None
        target = None
        if managed is not None:
            target = Target(managed.startup_timeout_s, managed.idle_after_s(self._settings.idle_ttl_s))
        actions = plan(
            state, target, self._observe(state, managed), self._memories.get(state), now, self._policy
        )
        holds_memory = managed is not None and managed.memory_gb is not None
        if waiting_for_memory and holds_memory and any(isinstance(a, Start) for a in actions):
            return False  # planned again on the next pass, which comes fast while they stop
        return bool(actions) and self._carry_out(state, managed, actions)

    def _observe(self, state: ModelState, spec: ModelSpec | None) -> Observed | None:
        if state.phase not in RUNNING:
            self._seen(state.model_id, None)
            return None
        try:
            handle = Handle.from_json(state.handle or {})
        except (KeyError, TypeError, ValueError):
            return Observed(running=False)  # no usable handle: nothing of ours can be found
        try:
            seen = self._runtimes.for_handle(handle).inspect(handle)
        except Exception as exc:
            self._seen(state.model_id, str(exc))
            return Observed.unknown(str(exc))
        self._seen(state.model_id, None)
        if seen.running and state.phase == Phase.READY and spec is not None and state.desired == LOADED:
            live = self._liveness.watch(handle, spec)
            hung = live.failures >= self._settings.liveness_failures
            model_id = state.model_id
            return Observed(
                running=True,
                unhealthy=live.reason if hung else None,
                liveness_failures=live.failures,
                busy=self._activity.busy(model_id),
                last_used=self._activity.last_used(model_id),
            )
        if not seen.running or state.phase != Phase.STARTING or spec is None or state.desired != LOADED:
            return Observed(running=seen.running, exit_code=seen.exit_code, oom=seen.oom_killed)
        probe = self._readiness.watch(handle, spec)
        return Observed(
            running=True,
            ready=probe is not None and probe.ok,
            probe_reason=probe.reason if probe is not None else "not probed yet",
        )

    def _carry_out(
        self, state: ModelState, spec: ModelSpec | None, actions: Sequence[planner.Action]
    ) -> bool:
        events: list[Event] = []
        slow: Start | Stop | None = None
        for action in actions:
            if isinstance(action, Start | Stop):
                slow = action
                if isinstance(action, Stop) and action.announce:
                    events.append(StopIssued(action.reason))
            else:
                events.append(self._event(state, action))
        version = state.version
        if events:
            try:
                self._store.append(model_stream(state.model_id), events, version, ACTOR)
            except ConcurrencyConflict:
                self.kick()  # planned on a state that moved on: plan again from the new one
                return False
            self._changes.notify()
            version += len(events)
        if isinstance(slow, Start) and spec is not None:
            self._submit(state.model_id, version, self._start, spec, slow.attempt)
        elif isinstance(slow, Stop) and (slow.handle or state.handle):
            self._submit(
                state.model_id, version, self._stop, state.model_id, slow.handle or state.handle, slow
            )
        elif state.handle and any(isinstance(a, DEAD_OR_HUNG) for a in actions):
            # The server is dead (or hung: it is killed here) and that is recorded: clear what it
            # left behind (an exited container) now, not at the next start, which never comes
            # after an unload.
            self._submit(state.model_id, None, self._discard, state.handle)
        return bool(events)

    def _event(self, state: ModelState, action: planner.Action) -> Event:
        match action:
            case planner.MarkReady(load_duration_s=duration):
                return ReadyObserved(duration)
            case planner.MarkCrashed(exit_code=code, oom=oom):
                return Crashed(code, oom, self._state_tail(state))
            case planner.StartFailed(reason=reason, exit_code=code):
                return StartFailed(reason, code, self._state_tail(state))
            case planner.MarkUnhealthy(reason=reason, failures=failures):
                return Unhealthy(reason, failures)
            case planner.ScheduleRestart(delay_s=delay, attempt=attempt, at=at):
                return RestartScheduled(delay, attempt, at)
            case planner.GiveUp(reason=reason, crashes=crashes):
                return GaveUp(reason, crashes)
            case planner.MarkStopped(reason=reason, exit_code=code):
                return Stopped(reason, code)
            case planner.RequestUnload(reason=reason):
                return UnloadRequested(reason)
        raise TypeError(f"{action!r} is not recorded directly")

    def _due(self, states: Mapping[str, ModelState], now: float) -> float:
        """When the timer should run the next full pass; pending restarts get a wake-up of their own."""
        moving = bool(self._busy()) or any(planner.transitional(s) for s in states.values())
        due = time.monotonic() + (self._settings.fast_tick_s if moving else self._settings.tick_s)
        for state in states.values():
            if state.phase == Phase.BACKOFF and state.desired == LOADED:
                restart_at = self._memories.get(state).restart_at
                if restart_at is not None:
                    self._wake_at(state.model_id, restart_at)
        return due

    def _wake_at(self, model_id: str, at: float) -> None:
        """Kick at ``at`` (epoch seconds): a restart is due then, to the ms rather than the next tick."""
        scheduler = self._scheduler
        if scheduler is None or self._wakes.get(model_id) == at:
            return
        self._wakes[model_id] = at
        scheduler.add_job(
            self.kick,
            "date",
            run_date=datetime.fromtimestamp(at, UTC),
            id=f"wake-{model_id}",
            replace_existing=True,
            misfire_grace_time=None,
        )

    # --- slow actions, off the tick ----------------------------------------------------------

    def _submit(
        self, model_id: str, planned_version: int | None, func: Callable[..., None], *args: Any
    ) -> Future[None] | None:
        with self._inflight_lock:
            if not self._accepting or model_id in self._inflight:
                return None
            future = self._actions.submit(self._guarded, model_id, planned_version, func, *args)
            self._inflight[model_id] = future
        future.add_done_callback(functools.partial(self._finished, model_id))
        return future

    def _guarded(
        self, model_id: str, planned_version: int | None, func: Callable[..., None], *args: Any
    ) -> None:
        if planned_version is not None:
            current = self._store.model_state(model_id)
            if (current.version if current is not None else 0) != planned_version:
                return  # the user changed their mind since the plan; the next pass re-plans
        func(*args)

    def _finished(self, model_id: str, future: Future[None]) -> None:
        with self._inflight_lock:
            if self._inflight.get(model_id) is future:
                del self._inflight[model_id]
        if not future.cancelled() and future.exception() is not None:
            log.error("action for %s failed: %s", model_id, future.exception())
        self.kick()

    def _start(self, spec: ModelSpec, attempt: int) -> None:
        runtime = self._runtimes.for_spec(spec)
        try:
            handle = runtime.start(spec)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, RuntimeFailure) else f"could not start: {exc!r}"
            self._record(spec.id, [StartFailed(reason, None, _tail(runtime, None, spec.id))])
            return
        self._record(spec.id, [StartIssued(handle.to_json(), attempt)])
        self._readiness.watch(handle, spec)  # probe from now on, not from the next pass

    def _stop(self, model_id: str, handle_json: Mapping[str, Any], action: Stop) -> None:
        handle = Handle.from_json(dict(handle_json))
        runtime = self._runtimes.for_handle(handle)
        seen = runtime.stop(handle, self._settings.stop_grace_s)
        if action.failure is not None:
            # The exit code is our own stop's, not a reason for the failure: left out.
            event: Event = StartFailed(action.failure, None, _tail(runtime, handle, model_id))
        else:
            event = Stopped(action.reason, seen.exit_code)
        self._record(model_id, [event])

    def _discard(self, handle_json: Mapping[str, Any]) -> None:
        handle = Handle.from_json(dict(handle_json))
        self._runtimes.for_handle(handle).stop(handle, 0)

    def _record(self, model_id: str, events: Sequence[Event]) -> None:
        """Append the outcome of something that happened: retried until it is stored."""
        self._store.append_retrying(model_stream(model_id), lambda _version: events, ACTOR)
        self._changes.notify()

    def _state_tail(self, state: ModelState) -> str:
        try:
            handle = Handle.from_json(state.handle) if state.handle else None
            runtime = self._runtimes.for_handle(handle) if handle else self._runtimes.get(RuntimeKind.PROCESS)
        except (KeyError, TypeError, ValueError):
            return ""
        return _tail(runtime, handle, state.model_id)

    # --- adoption ----------------------------------------------------------------------------

    def adopt(self) -> bool:
        """Take over or stop the servers an earlier app run left, once, as soon as the catalog
        can be read (an unreadable one says nothing about which servers are still wanted)."""
        if not self._adoption_pending or not self._catalog.good:
            return False
        self._adoption_pending = False
        catalog = self._catalog.catalog
        states = self._store.model_states()
        found = [h.to_json() for h in self._leftovers(catalog, states)]
        loadable = {spec.id for spec in catalog if spec.can_load}
        adopting: list[Future[None]] = []
        for adoption in plan_adoption(states, found, loadable):
            spec = catalog.get(adoption.model_id)
            future = self._submit(adoption.model_id, None, self._adopt, adoption, spec)
            if future is not None and not any(isinstance(a, Stop) for a in adoption.actions):
                adopting.append(future)
        # Adoptions are quick (one probe each) and waited for, so once the app is up the
        # projection names the servers it found. Stopping unwanted ones (a grace period each)
        # goes on in the background.
        concurrent.futures.wait(adopting, timeout=ADOPT_WAIT_S)
        return True

    def _leftovers(self, catalog: Catalog, states: Mapping[str, ModelState]) -> list[Handle]:
        kinds = {RuntimeKind.PROCESS} | {spec.runtime for spec in catalog if spec.can_load}
        kinds |= {
            RuntimeKind(s.handle["runtime"]) for s in states.values() if s.handle and "runtime" in s.handle
        }
        found: list[Handle] = []
        for kind in sorted(kinds - {RuntimeKind.EXTERNAL}):
            try:
                runtime = self._runtimes.get(kind)
                handles = runtime.find_managed()
            except Exception as exc:
                log.warning("cannot look for leftover %s servers: %s", kind, exc)
                continue
            for handle in handles:
                try:
                    if runtime.inspect(handle).running:
                        found.append(handle)
                except Exception as exc:  # unknown is neither adopted nor stopped
                    log.warning("cannot inspect leftover %s of %s: %s", handle.ref, handle.model_id, exc)
        return found

    def _adopt(self, adoption: AdoptionPlan, spec: ModelSpec | None) -> None:
        for action in adoption.actions:
            if isinstance(action, Stop) and action.handle is not None:
                self._record(adoption.model_id, [StopIssued(action.reason)])
                self._stop(adoption.model_id, action.handle, action)
            elif isinstance(action, planner.Adopt):
                ready = spec is not None and self._probe(spec, timeout_s=ADOPT_PROBE_TIMEOUT_S).ok
                self._record(adoption.model_id, [Adopted(action.handle, ready=ready)])

    # --- housekeeping and exit ---------------------------------------------------------------

    def rotate_logs(self) -> None:
        """Keep running servers' logs under the size cap."""
        for state in self._store.model_states().values():
            if state.phase in RUNNING:
                try:
                    logfile.rotate_if_large(logfile.log_path(self._settings.log_dir, state.model_id))
                except OSError as exc:
                    log.warning("cannot rotate the log of %s: %s", state.model_id, exc)

    def shutdown(self, *, stop_servers: bool) -> None:
        """End passes, let actions in flight finish, then (unless told not to) stop every server."""
        with self._inflight_lock:
            self._accepting = False
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self._flight.close()
        self._readiness.close()
        self._liveness.close()
        self._runtimes.set_on_exit(None)
        # Queued actions are dropped; running ones end and record their outcome.
        self._actions.shutdown(wait=True, cancel_futures=True)
        if stop_servers:
            self.stop_everything(SHUTDOWN)

    def stop_everything(self, reason: str) -> None:
        """Record the unload of every wanted or running model and stop the running ones in parallel."""
        targets: list[tuple[str, dict[str, Any]]] = []
        for state in self._store.model_states().values():
            running = state.phase in RUNNING and state.handle is not None
            events: list[Event] = []
            if state.desired == LOADED:
                events.append(UnloadRequested(reason))
            if running and state.phase != Phase.STOPPING:
                events.append(StopIssued(reason))
            if events:
                self._record(state.model_id, events)
            if running and state.handle is not None:
                targets.append((state.model_id, state.handle))
        if not targets:
            return
        with ThreadPoolExecutor(len(targets), thread_name_prefix="dxg-stop") as pool:
            futures = [
                pool.submit(self._stop, model_id, handle, Stop(reason)) for model_id, handle in targets
            ]
        for (model_id, _), future in zip(targets, futures, strict=True):
            if future.exception() is not None:
                log.error("stopping %s at exit failed: %s", model_id, future.exception())


def _tail(runtime: Runtime, handle: Handle | None, model_id: str) -> str:
    try:
        return runtime.logs(handle, model_id, logfile.EVENT_TAIL_LINES)
    except Exception:  # a log tail is a courtesy; its absence must not lose the event
        return ""
