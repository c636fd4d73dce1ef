"""What the request handlers share: configuration, start clock, readiness, counters and the
serving model's bookkeeping (batch slots and prefix cache)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from simulator.clock import StartClock
from simulator.config import SimConfig
from simulator.metrics import Metrics
from simulator.prefix_cache import PrefixCache
from simulator.serving import Scheduler, ServingParams


def serving_params(config: SimConfig) -> ServingParams:
    return ServingParams(
        ttft_s=config.ttft_s,
        tokens_per_s=config.tokens_per_s,
        prefill_tokens_per_s=config.prefill_tokens_per_s,
        decode_slowdown_per_1k=config.decode_slowdown_per_1k,
        max_batch=config.max_batch,
        batch_slowdown=config.batch_slowdown,
    )


@dataclass
class SimState:
    config: SimConfig
    clock: StartClock
    metrics: Metrics = field(default_factory=Metrics)
    listening_at: float | None = None  # monotonic; None until the socket accepts connections
    # Touched only from the event loop thread, in the order requests are planned.
    scheduler: Scheduler = field(init=False)
    prefix_cache: PrefixCache = field(init=False)

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(serving_params(self.config))
        self.prefix_cache = PrefixCache(self.config.prefix_cache_tokens)

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
