"""Probing ready servers for life, off the tick, so a hung one is noticed and replaced.

A server can run and still be dead to its users: a process stopped with SIGSTOP, a paused
container, a deadlocked engine. ``inspect`` sees it running, so only asking it tells. One small
thread per ready server asks its engine's liveness endpoint every ``period_s`` with a timeout;
the reconciler reads the count of failures in a row and, past its limit, records ``Unhealthy``,
kills the server and restarts it under the usual backoff.

The timeout is generous on purpose: a server busy with a long prefill still answers its health
route (engines serve it from another thread), but slowly on a loaded machine, and a false
"hung" would kill a healthy server. The watch only observes: the reconciler records every event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from lifecycle.catalog import ModelSpec
from lifecycle.observe.probes import ProbeResult, ProbeTarget, probe_live
from lifecycle.observe.server_watch import ServerWatch, Watcher

DEFAULT_PERIOD_S: Final = 10.0
DEFAULT_TIMEOUT_S: Final = 10.0


class LiveProbe(Protocol):
    def __call__(self, target: ProbeTarget, timeout_s: float = ...) -> ProbeResult: ...


@dataclass(frozen=True)
class Liveness:
    failures: int = 0  # probes failed in a row (0: the last one passed, or none ran yet)
    reason: str = ""  # the last failure's words


class LivenessWatch(ServerWatch[Liveness]):
    thread_prefix = "live"

    def __init__(
        self,
        on_failure: Callable[[], None],
        *,
        period_s: float = DEFAULT_PERIOD_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        probe: LiveProbe = probe_live,
    ) -> None:
        super().__init__()
        self._on_failure = on_failure
        self._period_s = period_s
        self._timeout_s = timeout_s
        self._probe = probe

    def _initial(self) -> Liveness:
        return Liveness()

    def failures(self, model_id: str) -> Liveness:
        return self.latest(model_id)

    def _run(self, watcher: Watcher[Liveness], spec: ModelSpec) -> None:
        while not watcher.stop.wait(self._period_s):
            result = self._probe(spec, timeout_s=self._timeout_s)
            if watcher.stop.is_set():
                return
            if result.ok:
                watcher.latest = Liveness()
                continue
            watcher.latest = Liveness(watcher.latest.failures + 1, result.reason)
            self._on_failure()  # the reconciler decides whether this many is too many
