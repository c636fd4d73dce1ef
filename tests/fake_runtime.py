"""An in-memory ``Runtime`` and ready probe for reconciler tests that need no processes, no HTTP
and no sleeps: crash loops, give-up, adoption after a hard kill and races run in milliseconds.

``FakeRuntime`` speaks the ``Runtime`` protocol as the process runtime does (kind "process",
``on_exit`` called for every exit, ``find_managed`` lists the servers still running) but a
"server" is a record in a dict. A test turns knobs on it: the next starts fail, a server
crashes with an exit code, a server becomes ready, starts or stops are held in flight until
released. It counts what was asked of it and keeps the peak number of servers that ran at
once per model, so "never two servers" is checked over the whole test, not just at its end.

``FakeReadyProbe`` has the shape of ``probe_ready`` and answers from the fake's state by URL,
as an HTTP probe would: whichever server of the fake listens at the model's URL answers.

Every method is thread-safe: the reconciler calls in from its pass, its action pool and its
readiness watchers while the test thread turns the knobs.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from lifecycle.catalog import ModelSpec, RuntimeKind
from lifecycle.core.values import Availability, ExitCallback, Handle, Observation
from lifecycle.observe.probes import DEFAULT_TIMEOUT_S, ProbeResult, ProbeTarget, ready_path
from lifecycle.runtimes.protocol import AlreadyRunning, RuntimeFailure

if TYPE_CHECKING:
    import httpx

# A held start or stop gives up after this long, so a test that forgets to release never hangs.
HOLD_LIMIT_S: Final = 10.0
FIRST_PID: Final = 40_000
# What a server stopped with SIGTERM reports, as the process runtime writes it (128 + 15).
SIGTERM_EXIT: Final = 143


@dataclass
class FakeServer:
    """One server of the fake: a record, never a process."""

    handle: Handle
    url: str
    ready: bool = False
    running: bool = True
    exit_code: int | None = None
    oom: bool = False

    @property
    def model_id(self) -> str:
        return self.handle.model_id


@dataclass
class _Hold:
    """A gate that starts or stops wait at while a test holds them in flight."""

    open: threading.Event = field(default_factory=threading.Event)
    inside: int = 0  # calls waiting at the gate right now

    def __post_init__(self) -> None:
        self.open.set()


class FakeRuntime:
    """The ``Runtime`` protocol over an in-memory table of servers, with knobs for tests."""

    kind: str = RuntimeKind.PROCESS.value

    def __init__(
        self, *, auto_ready: bool = True, stop_exit_code: int = SIGTERM_EXIT, instance: str = "fake"
    ) -> None:
        # Servers started from now on answer their ready probe at once (False: see set_ready).
        self.auto_ready = auto_ready
        self.stop_exit_code = stop_exit_code
        self.instance = instance
        # Set by the registry (Runtimes.set_on_exit), as on the process runtime.
        self.on_exit: ExitCallback | None = None
        self._lock = threading.Lock()
        self._servers: dict[str, FakeServer] = {}  # ref -> server, exited ones included
        self._pids = itertools.count(FIRST_PID)
        self._start_failures: deque[Exception] = deque()
        self._offline: dict[str, str] = {}
        self._inspect_error: Exception | None = None
        self._start_hold = _Hold()
        self._stop_hold = _Hold()
        self._spawned_hold = _Hold()
        self._peak: dict[str, int] = {}
        self._logs: dict[str, list[str]] = {}
        self.start_calls = 0  # every call of start(), failed ones included
        self.starts = 0  # servers started
        self.stop_calls = 0  # every call of stop(), on dead servers too
        self.stops = 0  # running servers stopped
        self.discards = 0  # stop() of a server that had already exited (clearing its remains)

    # --- knobs ---------------------------------------------------------------------------------

    def fail_next_start(self, error: Exception, times: int = 1) -> None:
        """The next ``times`` starts raise ``error`` (a ``RuntimeFailure`` such as ``PortInUse``
        is what a real runtime raises; anything else reads as a bug in the runtime)."""
        with self._lock:
            self._start_failures.extend([error] * times)

    def set_offline(self, model_id: str, reason: str | None) -> None:
        """``check`` answers Offline with ``reason`` for the model (None: available again)."""
        with self._lock:
            if reason is None:
                self._offline.pop(model_id, None)
            else:
                self._offline[model_id] = reason

    def fail_inspect(self, error: Exception | None) -> None:
        """``inspect`` raises ``error`` (the runtime cannot tell, e.g. Docker unreachable); None ends it."""
        with self._lock:
            self._inspect_error = error

    def set_ready(self, model_id: str, ready: bool = True) -> Handle:
        """The model's running server answers its ready probe (or stops answering it)."""
        with self._lock:
            server = self._running_one(model_id)
            server.ready = ready
            return server.handle

    def crash(self, model_id: str, exit_code: int | None = 1, *, oom: bool = False) -> Handle:
        """The model's running server exits on its own; ``on_exit`` is called as the process
        runtime's waiter thread calls it (from this thread: all it does is wake the reconciler)."""
        with self._lock:
            server = self._running_one(model_id)
            self._exit(server, exit_code, oom=oom)
        self._report_exit(server)
        return server.handle

    def add_leftover(
        self, model_id: str, url: str, *, ready: bool = True, started_at: float | None = None
    ) -> Handle:
        """A server an earlier run of the app left running, never started through ``start``."""
        at = time.time() - 3600 if started_at is None else started_at
        with self._lock:
            return self._add(model_id, url, ready=ready, started_at=at).handle

    @contextmanager
    def holding_starts(self) -> Iterator[None]:
        """Starts wait inside ``start`` (see ``starts_held``) until the block ends."""
        self._start_hold.open.clear()
        try:
            yield
        finally:
            self._start_hold.open.set()

    @contextmanager
    def holding_spawned_starts(self) -> Iterator[None]:
        """Starts spawn their server, then wait before returning until the block ends: the window
        in which a server of the app's own runs but its StartIssued is not recorded yet."""
        self._spawned_hold.open.clear()
        try:
            yield
        finally:
            self._spawned_hold.open.set()

    @contextmanager
    def holding_stops(self) -> Iterator[None]:
        """Stops wait inside ``stop`` (see ``stops_held``) until the block ends."""
        self._stop_hold.open.clear()
        try:
            yield
        finally:
            self._stop_hold.open.set()

    # --- what a test reads ---------------------------------------------------------------------

    @property
    def starts_held(self) -> int:
        with self._lock:
            return self._start_hold.inside

    @property
    def stops_held(self) -> int:
        with self._lock:
            return self._stop_hold.inside

    def live(self, model_id: str | None = None) -> list[Handle]:
        """The running servers (of one model), oldest first."""
        with self._lock:
            return [s.handle for s in self._live(model_id)]

    def server(self, handle: Handle | dict[str, object]) -> FakeServer:
        """A copy of the server behind ``handle`` (a Handle or its JSON)."""
        ref = handle.ref if isinstance(handle, Handle) else str(handle["ref"])
        with self._lock:
            return dataclasses.replace(self._servers[ref])

    def peak(self, model_id: str) -> int:
        """The most servers of the model that ever ran at the same time."""
        with self._lock:
            return self._peak.get(model_id, 0)

    # --- the Runtime protocol ------------------------------------------------------------------

    def check(self, spec: ModelSpec) -> Availability:
        with self._lock:
            reason = self._offline.get(spec.id)
            running = [srv for srv in self._servers.values() if srv.model_id == spec.id and srv.running]
        if reason is None and running:
            # As the process runtime does: its pidfile shows a server of the model already up.
            reason = str(AlreadyRunning(spec.id, f"pid {running[0].handle.ref}"))
        return Availability.ok() if reason is None else Availability.offline(reason)

    def start(self, spec: ModelSpec) -> Handle:
        with self._lock:
            self.start_calls += 1
            failure = self._start_failures.popleft() if self._start_failures else None
        self._pass_gate(self._start_hold, "start")
        if failure is not None:
            self._note(spec.id, f"start of {spec.id} failed: {failure}")
            raise failure
        with self._lock:
            self.starts += 1
            server = self._add(spec.id, spec.url, ready=self.auto_ready, started_at=time.time())
        self._pass_gate(self._spawned_hold, "start")
        return server.handle

    def stop(self, handle: Handle, grace_s: float) -> Observation:
        with self._lock:
            self.stop_calls += 1
        self._pass_gate(self._stop_hold, "stop")
        with self._lock:
            server = self._servers.get(handle.ref)
            if server is None:
                return Observation(running=False, started_at=handle.started_at)
            if not server.running:
                self.discards += 1
                return Observation(running=False, exit_code=server.exit_code, started_at=handle.started_at)
            self.stops += 1
            self._exit(server, self.stop_exit_code, oom=False)
        self._report_exit(server)
        return Observation(running=False, exit_code=server.exit_code, started_at=handle.started_at)

    def inspect(self, handle: Handle) -> Observation:
        with self._lock:
            if self._inspect_error is not None:
                raise self._inspect_error
            server = self._servers.get(handle.ref)
            if server is None or server.handle.started_at != handle.started_at:
                return Observation(running=False, started_at=handle.started_at, missing=True)
            return Observation(
                running=server.running,
                exit_code=server.exit_code,
                oom_killed=server.oom,
                started_at=handle.started_at,
            )

    def find_managed(self) -> list[Handle]:
        with self._lock:
            return [s.handle for s in self._live(None)]

    def logs(self, handle: Handle | None, model_id: str, tail: int) -> str:
        with self._lock:
            return "\n".join(self._logs.get(model_id, [])[-tail:])

    # --- for the probe -------------------------------------------------------------------------

    def answering(self, url: str) -> bool | None:
        """Whether the server listening at ``url`` is ready; None when none runs there (the
        newest answers, should there be two)."""
        with self._lock:
            found = [s for s in self._servers.values() if s.running and s.url == url]
            return found[-1].ready if found else None

    # --- inside --------------------------------------------------------------------------------

    def _add(self, model_id: str, url: str, *, ready: bool, started_at: float) -> FakeServer:
        pid = next(self._pids)
        handle = Handle(
            runtime=self.kind,
            model_id=model_id,
            ref=str(pid),
            started_at=started_at,
            extra={"pgid": str(pid), "instance": self.instance},
        )
        server = self._servers[handle.ref] = FakeServer(handle, url, ready=ready)
        self._peak[model_id] = max(self._peak.get(model_id, 0), len(self._live(model_id)))
        self._logs.setdefault(model_id, []).append(f"started {model_id} as pid {pid}")
        return server

    def _live(self, model_id: str | None) -> list[FakeServer]:
        return [s for s in self._servers.values() if s.running and model_id in (None, s.model_id)]

    def _running_one(self, model_id: str) -> FakeServer:
        live = self._live(model_id)
        if len(live) != 1:
            raise AssertionError(f"expected one running server of {model_id}, the fake has {len(live)}")
        return live[0]

    def _exit(self, server: FakeServer, exit_code: int | None, *, oom: bool) -> None:
        server.running = False
        server.ready = False
        server.exit_code = exit_code
        server.oom = oom
        cause = " (out of memory)" if oom else ""
        self._logs.setdefault(server.model_id, []).append(
            f"{server.model_id} (pid {server.handle.ref}) exited with code {exit_code}{cause}"
        )

    def _report_exit(self, server: FakeServer) -> None:
        callback = self.on_exit
        if callback is not None:
            callback(server.model_id, server.exit_code)

    def _note(self, model_id: str, line: str) -> None:
        with self._lock:
            self._logs.setdefault(model_id, []).append(line)

    def _pass_gate(self, hold: _Hold, what: str) -> None:
        with self._lock:
            hold.inside += 1
        try:
            if not hold.open.wait(HOLD_LIMIT_S):
                raise RuntimeFailure(f"fake {what} held over {HOLD_LIMIT_S:g}s: the test never let go")
        finally:
            with self._lock:
                hold.inside -= 1


class NoHttpClient:
    """Stands in for ``httpx.Client`` where the readiness watch makes one for its probes: with
    the fake probe nothing goes over HTTP, and a real client costs 30-60 ms of CPU (its TLS
    context) for every server started, most of a fake start's time to ready. Any use fails."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> NoHttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the fake tier makes no HTTP calls, yet httpx.Client.{name} was used")


class FakeReadyProbe:
    """``probe_ready``'s shape, answered from a ``FakeRuntime``: 200 from a ready server at the
    model's URL, 503 "Loading model" from one still loading, connection refused from none."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(
        self, target: ProbeTarget, timeout_s: float = DEFAULT_TIMEOUT_S, *, client: httpx.Client | None = None
    ) -> ProbeResult:
        with self._lock:
            self.calls += 1
        ready = self.runtime.answering(target.url)
        if ready is None:
            return ProbeResult(False, False, f"nothing answers at {target.url} (connection refused)")
        if not ready:
            return ProbeResult(False, True, f"{ready_path(target)} answered 503: Loading model", 503)
        return ProbeResult(True, True, "ready", 200)
