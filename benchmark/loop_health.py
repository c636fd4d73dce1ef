"""The runner watches its own event loop: a saturated client inflates every latency silently.

A ticker sleeps a short period over and over and records how late it woke
(loop lag). When the loop is busy parsing frames for too many streams, the
ticker wakes late, and so does every timestamp the runner takes. Levels whose
lag (or send slip) passes the limits are marked invalid with the figure, rather
than reported as if the server were slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Final

TICK_S: Final = 0.005


class LoopMonitor:
    def __init__(self, period_s: float = TICK_S) -> None:
        self.period_s = period_s
        self._samples: list[float] = []
        self._since = 0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        period_ns = int(self.period_s * 1e9)
        while True:
            before = time.perf_counter_ns()
            await asyncio.sleep(self.period_s)
            if before >= self._since:  # a tick begun before a reset belongs to what came before
                self._samples.append(max(0, time.perf_counter_ns() - before - period_ns) / 1e6)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def take(self) -> list[float]:
        """Lag samples (ms) since the last call; ticks already under way are not counted.

        Whatever ran between two levels (saving the level, say) is not the next level's lag.
        """
        samples, self._samples = self._samples, []
        self._since = time.perf_counter_ns()
        return samples

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class CpuShare:
    """This process's CPU time over wall time since the last call.

    Near 1.0 the runner owns a whole core: its loop still keeps time (the lag check passes),
    but reads start to hold several frames each, so their timestamps merge. Stored with each
    level as a warning sign next to the lag.
    """

    def __init__(self) -> None:
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    def share(self) -> float:
        cpu, wall = time.process_time(), time.perf_counter()
        share = (cpu - self._cpu) / max(wall - self._wall, 1e-9)
        self._cpu, self._wall = cpu, wall
        return round(share, 3)


class CancelToken:
    """Set from any thread (a page button, Ctrl+C); the runner checks it between sends."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when cancelled (at once if it already is): a run in another
        process hears of a cancel this way, without a thread waiting on the token."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
