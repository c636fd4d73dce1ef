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

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Final, Protocol

from lifecycle.catalog import ModelSpec
from lifecycle.core.values import Handle
from lifecycle.observe.probes import ProbeResult, ProbeTarget, probe_live

DEFAULT_PERIOD_S: Final = 10.0
DEFAULT_TIMEOUT_S: Final = 10.0


class LiveProbe(Protocol):
    def __call__(self, target: ProbeTarget, timeout_s: float = ...) -> ProbeResult: ...


@dataclass(frozen=True)
class Liveness:
    failures: int = 0  # probes failed in a row (0: the last one passed, or none ran yet)
    reason: str = ""  # the last failure's words


@dataclass
class _Watcher:
    key: tuple[str, float, str]  # which server: handle ref, its start time, the url probed
    stop: threading.Event = field(default_factory=threading.Event)
    latest: Liveness = field(default_factory=Liveness)


class LivenessWatch:
    def __init__(
        self,
        on_failure: Callable[[], None],
        *,
        period_s: float = DEFAULT_PERIOD_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        probe: LiveProbe = probe_live,
    ) -> None:
        self._on_failure = on_failure
        self._period_s = period_s
        self._timeout_s = timeout_s
        self._probe = probe
        self._watchers: dict[str, _Watcher] = {}
        self._lock = threading.Lock()
        self._closed = False

    def watch(self, handle: Handle, spec: ModelSpec) -> Liveness:
        """How the server has answered so far; starts probing it if nobody does yet."""
        key = (handle.ref, handle.started_at, spec.url)
        with self._lock:
            if self._closed:
                return Liveness()
            watcher = self._watchers.get(spec.id)
            if watcher is not None and watcher.key == key:
                return watcher.latest
            if watcher is not None:
                watcher.stop.set()  # an earlier server of the same model
            watcher = self._watchers[spec.id] = _Watcher(key)
        threading.Thread(
            target=self._probe_while_watched, args=(watcher, spec), name=f"live-{spec.id}", daemon=True
        ).start()
        return watcher.latest

    def failures(self, model_id: str) -> Liveness:
        with self._lock:
            watcher = self._watchers.get(model_id)
        return watcher.latest if watcher is not None else Liveness()

    def retain(self, model_ids: Collection[str]) -> None:
        """Stop watching every model not in ``model_ids`` (the ones no longer ready)."""
        with self._lock:
            for model_id in [m for m in self._watchers if m not in model_ids]:
                self._watchers.pop(model_id).stop.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.retain(())

    def _probe_while_watched(self, watcher: _Watcher, spec: ModelSpec) -> None:
        while not watcher.stop.wait(self._period_s):
            result = self._probe(spec, timeout_s=self._timeout_s)
            if watcher.stop.is_set():
                return
            if result.ok:
                watcher.latest = Liveness()
                continue
            watcher.latest = Liveness(watcher.latest.failures + 1, result.reason)
            self._on_failure()  # the reconciler decides whether this many is too many
