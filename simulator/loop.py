"""An asyncio event loop whose timers wake within microseconds instead of milliseconds.

epoll_wait() takes its timeout in whole milliseconds and Python rounds up,
so every asyncio.sleep() on the default loop wakes 0-1 ms late. That
lateness would show up in every token's timing. select() has microsecond
resolution, and an epoll file descriptor is itself pollable, so we sleep in
select() on the epoll fd and then collect the events with a zero timeout.
epoll still does the fd bookkeeping, so there is no 1024-descriptor limit.
"""

from __future__ import annotations

import asyncio
import select
import selectors
import time

# Waits shorter than this are slept in one go: their kernel slack is a few microseconds.
_SHORT_LEG_S = 0.02


class PreciseEpollSelector(selectors.EpollSelector):
    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > 0:
            select.select([self.fileno()], [], [], timeout)
        return super().select(0)


def new_event_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(PreciseEpollSelector())


async def sleep_until(deadline: float) -> float:
    """Sleep until a ``time.monotonic()`` deadline; return how late we woke (never early).

    The kernel may end a select()/epoll wait of T seconds up to T/1000 late
    (capped at 100 ms): 1 ms for a 1 s TTFT, 100 ms for a long startup. So a
    long wait stops 1% short and the rest is slept in short legs, whose slack
    is negligible.
    """
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(remaining * 0.99 if remaining > _SHORT_LEG_S else remaining)
    return time.monotonic() - deadline
