"""When to restart a crashed server, and when to stop trying. Pure: figures in, decisions out.

The defaults below are the only place the figures are written (``Settings.restart_policy()``
applies DXG_RESTART_* and DXG_CRASH_* over them; DESIGN.md "Desired vs actual"): the first
restart waits 2 s, each further one twice as long up to 60 s, and a server that was ready for
10 min before it crashed starts over at 2 s. Five failures within 10 min and the reconciler
gives up until the user asks for a load again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    initial_s: float = 2.0
    factor: float = 2.0
    max_s: float = 60.0
    reset_after_s: float = 600.0
    crash_limit: int = 5
    crash_window_s: float = 600.0

    def delay(self, streak: int) -> float:
        """The wait before the restart that follows the ``streak``-th failure in a row (1-based)."""
        exponent = max(0, streak - 1)
        # Capped before multiplying out, so a long streak never overflows a float.
        delay = self.initial_s
        for _ in range(exponent):
            delay *= self.factor
            if delay >= self.max_s:
                return self.max_s
        return min(delay, self.max_s)

    def next_streak(self, streak: int, ready_for_s: float | None) -> int:
        """The failure streak after one more failure; ``ready_for_s`` is how long the server had
        been ready when it failed (None: it never got ready)."""
        if ready_for_s is not None and ready_for_s >= self.reset_after_s:
            return 1
        return streak + 1

    def recent(self, failures: Iterable[float], now: float) -> list[float]:
        """The failure times that count towards giving up at ``now``."""
        return [t for t in failures if now - t < self.crash_window_s]

    def gives_up(self, failures: Iterable[float], now: float) -> bool:
        return len(self.recent(failures, now)) >= self.crash_limit
