"""Probing starting servers off the tick, so "ready" is noticed within a few tens of ms.

The reconciler's fast tick (0.25 s) alone would record ReadyObserved on average an eighth of a
second late. One small thread per starting server probes the engine's ready signal every
``poll_s`` and kicks the reconciler the moment it passes; the tick itself never waits on HTTP,
it reads the latest result. The watch only observes: the reconciler records every event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Final

import httpx

from lifecycle.catalog import ModelSpec
from lifecycle.core.values import Handle
from lifecycle.observe.probes import ProbeResult, ReadyProbe, probe_ready

DEFAULT_POLL_S: Final = 0.05
# Short, because a hung server must not hold its watcher for long; the next poll tries again.
DEFAULT_PROBE_TIMEOUT_S: Final = 1.0


@dataclass
class _Watcher:
    key: tuple[str, float, str]  # which server: handle ref, its start time, the url probed
    stop: threading.Event = field(default_factory=threading.Event)
    latest: ProbeResult | None = None


class ReadinessWatch:
    def __init__(
        self,
        on_ready: Callable[[], None],
        *,
        poll_s: float = DEFAULT_POLL_S,
        probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
        probe: ReadyProbe = probe_ready,
    ) -> None:
        self._on_ready = on_ready
        self._probe = probe
        self._poll_s = poll_s
        self._probe_timeout_s = probe_timeout_s
        self._watchers: dict[str, _Watcher] = {}
        self._lock = threading.Lock()
        self._closed = False

    def watch(self, handle: Handle, spec: ModelSpec) -> ProbeResult | None:
        """The latest probe of this server; starts probing it if nobody does yet."""
        key = (handle.ref, handle.started_at, spec.url)
        with self._lock:
            if self._closed:
                return None  # the app is exiting: a new poller would outlive it
            watcher = self._watchers.get(spec.id)
            if watcher is not None and watcher.key == key:
                return watcher.latest
            if watcher is not None:
                watcher.stop.set()  # an earlier server of the same model
            watcher = self._watchers[spec.id] = _Watcher(key)
        threading.Thread(
            target=self._probe_until_ready, args=(watcher, spec), name=f"ready-{spec.id}", daemon=True
        ).start()
        return None

    def retain(self, model_ids: Collection[str]) -> None:
        """Stop watching every model not in ``model_ids`` (the ones no longer starting)."""
        with self._lock:
            for model_id in [m for m in self._watchers if m not in model_ids]:
                self._watchers.pop(model_id).stop.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.retain(())

    def _probe_until_ready(self, watcher: _Watcher, spec: ModelSpec) -> None:
        # One client for the whole wait: making one per probe would cost more than the probe.
        # Another probe (the fake-runtime tests') brings its own means and gets none: a client
        # costs 30-60 ms of CPU to make.
        own_client = self._probe is probe_ready
        with httpx.Client(timeout=self._probe_timeout_s) if own_client else nullcontext() as client:
            while not watcher.stop.is_set():
                result = self._probe(spec, client=client)
                watcher.latest = result
                if result.ok:
                    if not watcher.stop.is_set():
                        self._on_ready()
                    return
                watcher.stop.wait(self._poll_s)
