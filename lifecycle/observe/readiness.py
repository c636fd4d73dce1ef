"""Probing starting servers off the tick, so "ready" is noticed within a few tens of ms.

The reconciler's fast tick (0.25 s) alone would record ReadyObserved on average an eighth of a
second late. One small thread per starting server probes the engine's ready signal every
``poll_s`` and kicks the reconciler the moment it passes; the tick itself never waits on HTTP,
it reads the latest result. The watch only observes: the reconciler records every event.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Final

import httpx

from lifecycle.catalog import ModelSpec
from lifecycle.observe.probes import ProbeResult, ReadyProbe, probe_ready
from lifecycle.observe.server_watch import ServerWatch, Watcher

DEFAULT_POLL_S: Final = 0.05
# Short, because a hung server must not hold its watcher for long; the next poll tries again.
DEFAULT_PROBE_TIMEOUT_S: Final = 1.0


class ReadinessWatch(ServerWatch[ProbeResult | None]):
    thread_prefix = "ready"

    def __init__(
        self,
        on_ready: Callable[[], None],
        *,
        poll_s: float = DEFAULT_POLL_S,
        probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
        probe: ReadyProbe = probe_ready,
    ) -> None:
        super().__init__()
        self._on_ready = on_ready
        self._probe = probe
        self._poll_s = poll_s
        self._probe_timeout_s = probe_timeout_s

    def _initial(self) -> ProbeResult | None:
        return None  # not probed yet

    def _run(self, watcher: Watcher[ProbeResult | None], spec: ModelSpec) -> None:
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
