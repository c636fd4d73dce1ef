"""What the request handlers share: configuration, start clock, readiness and counters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from simulator.clock import StartClock
from simulator.config import SimConfig
from simulator.metrics import Metrics


@dataclass
class SimState:
    config: SimConfig
    clock: StartClock
    metrics: Metrics = field(default_factory=Metrics)
    listening_at: float | None = None  # monotonic; None until the socket accepts connections

    @property
    def load_done_at(self) -> float:
        """Monotonic moment the simulated model load finishes: start + --startup-s."""
        return self.clock.mono + self.config.startup_s

    def ready_moment(self) -> float:
        """When the server became (or becomes) observably ready: loaded and listening."""
        if self.listening_at is None:
            raise RuntimeError("not listening yet")
        return max(self.load_done_at, self.listening_at)

    def is_ready(self) -> bool:
        # Compared against the clock on every request rather than flipped by a timer,
        # so a late timer can never delay readiness past the configured moment.
        return self.listening_at is not None and time.monotonic() >= self.load_done_at
