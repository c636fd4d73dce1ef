"""Test support: waiting for a started server to become ready, without missing that it died meanwhile.

Every poll asks the runtime first whether the server still runs, then the engine's ready
probe. So a server that exits during startup is reported within one poll interval with its
exit code and log tail, instead of after ``startup_timeout_s`` of refused connections.

``readiness_step`` is the same check as one non-blocking step;
``wait_until_ready`` loops it for tests that drive a runtime directly, without the
reconciler (which watches readiness with ``lifecycle.observe.readiness`` instead).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lifecycle.catalog import ModelSpec
from lifecycle.core.values import Handle
from lifecycle.observe.probes import DEFAULT_TIMEOUT_S, ProbeResult, probe_ready
from lifecycle.runtimes.logfile import EVENT_TAIL_LINES
from lifecycle.runtimes.protocol import PrematureExit, Runtime, StartTimeout

DEFAULT_POLL_S = 0.2


@dataclass(frozen=True)
class Readiness:
    """One look at a starting server that is still running."""

    ready: bool
    reason: str
    probe: ProbeResult


def _look(runtime: Runtime, handle: Handle, spec: ModelSpec, probe_timeout_s: float) -> Readiness:
    """Probe a server that is still running; raise PrematureExit if it is not."""
    observed = runtime.inspect(handle)
    if not observed.running:
        raise PrematureExit(observed.exit_code, runtime.logs(handle, spec.id, EVENT_TAIL_LINES))
    result = probe_ready(spec, timeout_s=probe_timeout_s)
    return Readiness(result.ok, result.reason, result)


def readiness_step(
    runtime: Runtime,
    handle: Handle,
    spec: ModelSpec,
    *,
    since: float | None = None,
    timeout_s: float | None = None,
    now: float | None = None,
    probe_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Readiness:
    """One non-blocking check: ready or not yet (with the probe's reason).

    Raises PrematureExit when the server is gone and StartTimeout when it is still not ready
    ``timeout_s`` (default: the spec's ``startup_timeout_s``) after ``since`` (epoch seconds;
    default: the handle's start). Pass ``since`` for adopted servers, whose start may lie
    long before the app began waiting for them.
    """
    result = _look(runtime, handle, spec, probe_timeout_s)
    limit = spec.startup_timeout_s if timeout_s is None else timeout_s
    began = handle.started_at if since is None else since
    if not result.ready and (time.time() if now is None else now) - began >= limit:
        raise StartTimeout(limit, result.reason)
    return result


def wait_until_ready(
    runtime: Runtime,
    handle: Handle,
    spec: ModelSpec,
    *,
    timeout_s: float | None = None,
    poll_s: float = DEFAULT_POLL_S,
) -> float:
    """Block until the server is ready; return how long that took, in seconds.

    Raises PrematureExit (exit code, log tail) within one poll interval of the server's
    exit, and StartTimeout (with the last probe's reason) once ``timeout_s`` has passed.
    """
    limit = spec.startup_timeout_s if timeout_s is None else timeout_s
    start = time.monotonic()
    deadline = start + limit
    while True:
        remaining = deadline - time.monotonic()
        # A hung server must not stretch one probe past the deadline.
        result = _look(runtime, handle, spec, min(DEFAULT_TIMEOUT_S, max(0.05, remaining)))
        if result.ready:
            return time.monotonic() - start
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StartTimeout(limit, result.reason)
        time.sleep(min(poll_s, remaining))
