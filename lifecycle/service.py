"""LifecycleService: the one door through which the UI, the API and the CLI load, unload and read.

Commands only record what the user wants (LoadRequested / UnloadRequested) and kick the
reconciler, which is the only thing that starts or stops servers. They are idempotent: a
request for what is already wanted appends nothing, and concurrent requests race on the
stream's expected version, so ten clicks on Load append one LoadRequested and start one server.

Reads come from the projection (one query for every model) plus short-lived caches for what
is slow to ask (runtime availability) or derived from events (load-time medians).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal

from db.session import make_engine
from db.store import Decision, EventStore
from lifecycle.activity import Activity
from lifecycle.catalog import Catalog, ModelSpec, RuntimeKind
from lifecycle.catalog.watch import CatalogHolder
from lifecycle.core import secrets
from lifecycle.core.admission import Budget, Holder, MemoryView, Refused, admit
from lifecycle.core.errors import CannotLoad, InvalidRequest, LifecycleError, NotEnoughMemory, UnknownModel
from lifecycle.core.events import (
    APP_STREAM,
    AppStarted,
    AppStopped,
    BenchmarkFinished,
    BenchmarkStarted,
    Event,
    InvalidStream,
    LoadRequested,
    RecordedEvent,
    UnloadReason,
    UnloadRequested,
    check_model_id,
    model_stream,
)
from lifecycle.core.policy import RestartPolicy
from lifecycle.core.projection import ModelState
from lifecycle.core.states import LOADED, RUNNING, UNLOADED, Phase
from lifecycle.core.status_view import ModelStatus, host_of, model_status
from lifecycle.core.values import Availability, Handle
from lifecycle.observe import memory_budget
from lifecycle.observe.availability import AvailabilityCache
from lifecycle.observe.docker_events import DockerPing, DockerWatch
from lifecycle.observe.probes import ReadyProbe, probe_ready
from lifecycle.runtimes.protocol import server_env
from lifecycle.runtimes.registry import Runtimes
from lifecycle.supervisor.memory_cache import MemoryCache
from lifecycle.supervisor.reconciler import Reconciler
from lifecycle.supervisor.wakeup import ChangeSignal
from settings import Settings

__all__ = [
    "CannotLoad",
    "InvalidRequest",
    "LifecycleError",
    "LifecycleService",
    "ModelStatus",
    "UnknownModel",
]

log = logging.getLogger(__name__)

APP_ACTOR: Final = "app"
ACTOR_MAX: Final = 64
HISTORY_LIMIT_MAX: Final = 1000
LOG_TAIL_MAX: Final = 10_000
# wait() re-reads at least this often, in case another process writes the same database.
WAIT_RECHECK_S: Final = 1.0
CONTAINER_RUNTIMES: Final = frozenset({RuntimeKind.DOCKER.value, RuntimeKind.COMPOSE.value})
PYPROJECT: Final = Path(__file__).resolve().parent.parent / "pyproject.toml"


class LifecycleService:
    def __init__(
        self,
        settings: Settings,
        *,
        store: EventStore | None = None,
        runtimes: Runtimes | None = None,
        policy: RestartPolicy | None = None,
        probe: ReadyProbe = probe_ready,
    ) -> None:
        self.settings = settings
        self._store = store if store is not None else EventStore(make_engine(settings.db_url))
        self._runtimes = runtimes if runtimes is not None else Runtimes(settings)
        self._policy = policy or settings.restart_policy()
        self._catalog = CatalogHolder(settings.catalog)
        self._catalog.reload()
        self._changes = ChangeSignal()
        self._memories = MemoryCache(self._store, self._policy)
        self._availability = AvailabilityCache(self._runtimes)
        # Gateway requests, chat streams and benchmark runs say when they use a model.
        self.activity = Activity()
        self._reconciler = Reconciler(
            settings,
            self._store,
            self._runtimes,
            self._catalog,
            self._memories,
            self._policy,
            self._changes,
            probe=probe,
            activity=self.activity,
        )
        self._docker_watch = DockerWatch(settings.instance, self._reconciler.kick)
        self._docker_ping = DockerPing()
        self._lifecycle = threading.Lock()
        self._admission = threading.Lock()
        self._started = False
        self._stopped = False

    # --- the service's own lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Load the catalog, record AppStarted, adopt or stop leftovers, start the reconciler.

        The database must be migrated already (the app's lifespan does that first).
        """
        with self._lifecycle:
            if self._started:
                return
            self._started = True
        self.settings.ensure_dirs()
        self._catalog.reload()
        self._remember_secrets()
        self._append_app(AppStarted(instance=self.settings.instance, pid=os.getpid()))
        self._availability.prime(self._catalog.catalog)
        self._reconciler.adopt()  # waits for a readable catalog if this one is broken
        self._reconciler.start(jobs=[("catalog", self.settings.catalog_poll_s, self._poll_catalog)])
        self._watch_docker_if_needed()

    def shutdown(self) -> None:
        """Stop every server this app manages (unless keep_running_on_exit) and record it all."""
        with self._lifecycle:
            if not self._started or self._stopped:
                return
            self._stopped = True
        keep = self.settings.keep_running_on_exit
        self._docker_watch.close()
        self._reconciler.shutdown(stop_servers=not keep)
        self._append_app(AppStopped(reason="shutdown, servers left running" if keep else "shutdown"))
        self._availability.close()

    def _poll_catalog(self) -> None:
        if not self._catalog.reload_if_changed():
            return
        self._changes.notify()  # a status a reader kept may name an old URL or served name
        self._remember_secrets()
        self._availability.prime(self._catalog.catalog)
        self._reconciler.adopt()  # no-op unless the catalog just became readable for the first time
        self._watch_docker_if_needed()
        self._reconciler.kick()  # new models need nothing, removed ones need stopping

    def _remember_secrets(self) -> None:
        """Every secret the catalog hands out is masked from now on, also in the logs of servers
        an earlier run started (adopted ones) before this run starts any."""
        token = self.settings.api_token
        secrets.KNOWN.remember([token.get_secret_value()] if token is not None else [])
        for spec in self._catalog.catalog:
            server_env(spec)

    def _watch_docker_if_needed(self) -> None:
        uses_docker = any(str(spec.runtime) in CONTAINER_RUNTIMES for spec in self._catalog.catalog)
        if uses_docker and not self._docker_watch.running:
            self._docker_watch.start()

    def _append_app(self, event: Event) -> None:
        self._store.append_retrying(APP_STREAM, lambda _version: [event], APP_ACTOR)

    def _command(self, model_id: str, decide: Decision, actor: str) -> None:
        """Append what ``decide`` asks for on the model's stream (racing commands retry and
        collapse: ten clicks on Load append one LoadRequested), then wake the reconciler."""
        if self._store.append_retrying(model_stream(model_id), decide, actor):
            self._changes.notify()
        self._reconciler.kick()

    # --- commands ----------------------------------------------------------------------------

    def load(self, model_id: str, actor: str = "ui", *, evict: bool = False) -> ModelStatus:
        """Ask for the model to be loaded; returns at once (``wait`` waits for ready).

        A model with ``memory_gb`` is admitted only if it fits the memory budget beside what
        is loaded; ``evict`` (or the model's ``swap``) unloads least recently used idle models
        to make room instead of refusing (``NotEnoughMemory``).
        """
        actor = _checked_actor(actor)
        spec = self._spec(model_id)
        if not spec.can_load:
            how = spec.manual_start or f"start it by hand so that it answers at {spec.url}"
            raise CannotLoad(f"{spec.name} is an external server that the app does not start: {how}")
        # One admission at a time: two loads that each fit alone can't both take the last room.
        # Models without memory_gb are not admitted by memory, so they need not wait their turn.
        with self._admission if spec.memory_gb is not None else contextlib.nullcontext():
            self._make_room(spec, evict=evict or spec.swap, actor=actor)
            return self._request_load(spec, actor)

    def _make_room(self, spec: ModelSpec, *, evict: bool, actor: str) -> None:
        if spec.memory_gb is None:
            return
        state = self._state(spec.id)
        if state.desired == LOADED and state.phase != Phase.FAILED:
            return  # admitted already; this is a repeat click
        now = time.time()
        view = self._memory_on(spec, now)
        if view is None:
            log.info("no memory budget is known on %s, so %s's load is not checked", host_of(spec), spec.id)
            return
        decision = admit(spec.id, spec.memory_gb, view.budget, list(view.holders), evict=evict, now=now)
        if isinstance(decision, Refused):
            raise NotEnoughMemory(decision.message)
        for victim in decision.evict:
            log.info("unloading %s to make room for %s", victim, spec.id)
            self._command(victim, lambda _version: [UnloadRequested(reason="evicted")], actor)

    @property
    def changes(self) -> int:
        """Moves whenever something is recorded or the catalog is read in again: a reader may keep
        statuses until it does."""
        return self._changes.count

    def upstream_key(self, model_id: str) -> str | None:
        """The key the model's server wants from clients, from the catalog's env; never logged.
        Remembered as a secret, so a server that prints it has it masked."""
        key = self._spec(model_id).api_key(os.environ)
        if key:
            secrets.KNOWN.remember([key])
        return key

    def memory(self) -> MemoryView:
        """This machine's memory budget now and the models holding it."""
        return self._local_memory(time.time())

    def _local_memory(self, now: float) -> MemoryView:
        budget = memory_budget.budget(self.settings.memory_budget_gb)
        return MemoryView(budget, tuple(self._holders(None, now)))

    def memory_at(self, model_id: str) -> MemoryView | None:
        """The budget of the host the model runs on, and the models holding it there; None when
        no budget is known for that host (another node, without DXG_MEMORY_BUDGET_GB and without
        a figure from its runtime)."""
        return self._memory_on(self._spec(model_id), time.time())

    def _place(self, spec: ModelSpec) -> tuple[str | None, float | None]:
        """Which memory the model holds, None for this machine's, and that memory's size where
        its runtime knows it (a swarm node's; a node that is the local engine's own is this
        machine)."""
        ask = getattr(self._runtimes.for_spec(spec), "memory_place", None)
        if callable(ask):
            place: tuple[str | None, float | None] = ask(spec)
            return place
        return host_of(spec), None

    def _memory_on(self, spec: ModelSpec, now: float) -> MemoryView | None:
        """Admission is per host: models on another node take nothing from this machine's memory."""
        place, total = self._place(spec)
        if place is None:
            return self._local_memory(now)
        host = host_of(spec) or place
        configured = self.settings.memory_budget_gb
        if configured is not None:
            source = f"budget {configured:g} GB on {host}, DXG_MEMORY_BUDGET_GB (per host)"
            budget = Budget(configured, measured=False, source=source)
        elif total is not None:
            budget = Budget(total, measured=False, source=f"{host}'s {total:g} GB, as its runtime reports it")
        else:
            return None
        return MemoryView(budget, tuple(self._holders(place, now)))

    def _holders(self, place: str | None, now: float) -> list[Holder]:
        """Models held in ``place``'s memory (None: this machine's) that are loaded or asked to
        be and whose memory is known: what its budget holds."""
        holders = []
        states = self._store.model_states()
        for spec in self._catalog.catalog:
            state = states.get(spec.id)
            # A model without memory_gb can't be counted: admission is as good as the estimates.
            wanted = state is not None and state.desired == LOADED and state.phase != Phase.FAILED
            if spec.memory_gb is None or state is None or not wanted or self._place(spec)[0] != place:
                continue
            since = state.since if state.since is not None else now
            holders.append(
                Holder(
                    spec.id,
                    spec.memory_gb,
                    ready=state.phase == Phase.READY,
                    busy=self.activity.busy(spec.id),
                    idle_since=max(since, self.activity.last_used(spec.id) or 0.0),
                )
            )
        return holders

    def _request_load(self, spec: ModelSpec, actor: str) -> ModelStatus:
        model_id = spec.id

        def decide(_version: int) -> list[Event]:
            state = self._state(model_id)
            if state.desired == LOADED and state.phase != Phase.FAILED:
                return []  # already asked for; the reconciler is on it
            # A start or stop of the app's own in flight holds the port and the pidfile: the
            # runtime's check would read it as a stranger's server. The reconciler plans from
            # the new wish once that action ends.
            if state.phase not in RUNNING and not self._reconciler.acting_on(model_id):
                availability = self._availability.refresh(spec)
                if not availability.available:
                    # The look at the port takes time: if meanwhile another click loaded the
                    # model and the reconciler started it, the server found is our own. Decide
                    # again on the state as it is now rather than refuse.
                    if self._state(model_id).version != state.version or self._reconciler.acting_on(model_id):
                        return decide(_version)
                    raise CannotLoad(f"{spec.name} can't be loaded: {availability.reason}")
            return [LoadRequested()]

        self._command(model_id, decide, actor)
        return self.status_of(model_id)

    def unload(self, model_id: str, actor: str = "ui", reason: UnloadReason = "user") -> ModelStatus:
        """Ask for the model's server to be stopped; returns at once (``wait`` waits for stopped)."""
        actor = _checked_actor(actor)
        spec = self._spec(model_id)
        if not spec.can_load:
            raise CannotLoad(
                f"{spec.name} is an external server that the app does not stop: stop it where it was started"
            )

        def decide(_version: int) -> list[Event]:
            wanted = self._state(model_id).desired != UNLOADED
            return [UnloadRequested(reason=reason)] if wanted else []

        self._command(model_id, decide, actor)
        return self.status_of(model_id)

    def wait(
        self,
        model_id: str,
        until: Literal["ready", "stopped"],
        timeout_s: float,
        abandon: Callable[[], bool] | None = None,
    ) -> ModelStatus:
        """Block until the model is ready (or failed) / stopped, or ``timeout_s`` passed; its status.

        ``abandon`` is asked at least every ``WAIT_RECHECK_S``: True ends the wait early (a
        cancelled benchmark, the app stopping), with the status as it is then."""
        if until not in ("ready", "stopped"):
            raise InvalidRequest(f"until must be 'ready' or 'stopped', not {until!r}")
        if timeout_s < 0:
            raise InvalidRequest(f"timeout must be 0 or more seconds, not {timeout_s}")
        goal = {Phase.READY.value, Phase.FAILED.value} if until == "ready" else {Phase.STOPPED.value}
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self._changes.count
            current = self.status_of(model_id)
            remaining = deadline - time.monotonic()
            # A start planned before an unload may still be under way: "stopped" is only true
            # once nothing more is coming (that start's server gets stopped on the next pass).
            settled = until == "ready" or not self._reconciler.acting_on(model_id)
            if (current.phase in goal and settled) or remaining <= 0 or (abandon is not None and abandon()):
                return current
            self._changes.wait(seen, min(remaining, WAIT_RECHECK_S))

    def record_benchmark(
        self, model_id: str, event: BenchmarkStarted | BenchmarkFinished, actor: str = "benchmark"
    ) -> None:
        """Put a benchmark run's start or end into the model's audit stream.

        Works without ``start()``: the benchmark command line records runs while the app (the
        lease holder) may or may not be running, and appends are safe from any process.
        """
        self._known(model_id)
        self._store.append_retrying(model_stream(model_id), lambda _version: [event], _checked_actor(actor))

    # --- reads -------------------------------------------------------------------------------

    def status(self) -> list[ModelStatus]:
        """Every catalog model, in catalog order."""
        now = time.time()
        states = self._store.model_states()
        return [self._view(spec, states.get(spec.id), now) for spec in self._catalog.catalog]

    def status_of(self, model_id: str) -> ModelStatus:
        spec = self._spec(model_id)
        return self._view(spec, self._store.model_state(model_id), time.time())

    def history(self, model_id: str | None = None, limit: int = 100, after: int = 0) -> list[RecordedEvent]:
        """Newest first when ``after`` is 0; otherwise the events after position ``after``, oldest
        first (a feed to poll)."""
        if not 1 <= limit <= HISTORY_LIMIT_MAX:
            raise InvalidRequest(f"limit must be 1-{HISTORY_LIMIT_MAX}, not {limit}")
        if after < 0:
            raise InvalidRequest(f"after must be a position (0 or more), not {after}")
        stream = None
        if model_id is not None:
            self._known(model_id)
            stream = model_stream(model_id)
        if after == 0:
            return self._store.recent_events(stream, limit)
        return self._store.read_all(after_position=after, limit=limit, stream=stream)

    def events_after(self, position: int, limit: int = HISTORY_LIMIT_MAX) -> list[RecordedEvent]:
        """Every model's events after ``position``, oldest first: a feed to fold (metrics)."""
        return self._store.read_all(after_position=max(position, 0), limit=limit)

    def logs(self, model_id: str, tail: int = 200) -> str:
        """The last ``tail`` lines of the model's log, secrets redacted."""
        spec, state = self._known(model_id)
        if not 1 <= tail <= LOG_TAIL_MAX:
            raise InvalidRequest(f"tail must be 1-{LOG_TAIL_MAX} lines, not {tail}")
        handle = _handle_of(state)
        if handle is not None:
            runtime = self._runtimes.for_handle(handle)
        else:
            runtime = self._runtimes.get(spec.runtime if spec is not None else RuntimeKind.PROCESS)
        return runtime.logs(handle, model_id, tail)

    def health(self) -> dict[str, Any]:
        reachable, detail = self._docker_ping.status()
        catalog = self._catalog.catalog
        scheduler = self._reconciler.running
        store_error = self.store_error
        return {
            "ok": self.catalog_error is None and scheduler and store_error is None,
            "store": {"writable": store_error is None, "error": store_error},
            "instance": self.settings.instance,
            "catalog": {
                "path": str(self._catalog.path),
                "models": len(catalog),
                "error": self.catalog_error,
                "warnings": list(catalog.warnings),
            },
            "docker": {"reachable": reachable, "detail": detail},
            "scheduler_running": scheduler,
            "version": app_version(),
        }

    @property
    def store_error(self) -> str | None:
        """Why the event store can't be written right now (None: it can)."""
        return self._store.write_error

    @property
    def catalog_error(self) -> str | None:
        return self._catalog.error

    @property
    def catalog(self) -> Catalog:
        """The catalog in use: the last one that could be read."""
        return self._catalog.catalog

    @property
    def reconciler(self) -> Reconciler:
        return self._reconciler

    @property
    def store(self) -> EventStore:
        return self._store

    # --- helpers -----------------------------------------------------------------------------

    def _spec(self, model_id: str) -> ModelSpec:
        spec = self._catalog.catalog.get(model_id)
        if spec is None:
            raise UnknownModel(model_id, self._catalog.catalog.ids)
        return spec

    def _known(self, model_id: str) -> tuple[ModelSpec | None, ModelState | None]:
        """A model in the catalog or with a history (it may have been removed since)."""
        spec = self._catalog.catalog.get(model_id)
        try:
            state = self._store.model_state(check_model_id(model_id))
        except InvalidStream:
            state = None
        if spec is None and state is None:
            raise UnknownModel(model_id, self._catalog.catalog.ids)
        return spec, state

    def _state(self, model_id: str) -> ModelState:
        return self._store.model_state(model_id) or ModelState(model_id=model_id)

    def _view(self, spec: ModelSpec, state: ModelState | None, now: float) -> ModelStatus:
        usual = self._memories.get(state).usual_load_s if state is not None else None
        # Its own server (running, or a start or stop in flight) holds the port check() looks at.
        ours = state is not None and (state.phase in RUNNING or self._reconciler.acting_on(spec.id))
        availability = Availability.ok() if spec.can_load and ours else self._availability.get(spec)
        failures, why = self._reconciler.liveness(spec.id)
        limit = self.settings.liveness_failures
        not_answering = f"{failures} of {limit} health checks failed: {why}" if failures else None
        return model_status(
            spec,
            state,
            availability,
            usual_load_s=usual,
            now=now,
            unrecorded=self.store_error,
            idle_unload_s=spec.idle_after_s(self.settings.idle_ttl_s),
            not_answering=not_answering,
            unobservable=self._reconciler.unobservable(spec.id),
        )


def _checked_actor(actor: str) -> str:
    if not isinstance(actor, str) or not 1 <= len(actor) <= ACTOR_MAX:
        raise InvalidRequest(f"actor must be 1-{ACTOR_MAX} characters, e.g. 'ui', 'api' or 'cli'")
    return actor


def _handle_of(state: ModelState | None) -> Handle | None:
    if state is None or not state.handle:
        return None
    try:
        return Handle.from_json(state.handle)
    except (KeyError, TypeError, ValueError):
        return None


@functools.cache
def app_version() -> str:
    try:
        return str(tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
