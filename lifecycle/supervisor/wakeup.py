"""Waking the reconciler at once without ever running two passes or losing a wake-up.

A kick (load, unload, a process exit, a Docker die event) must lead to a pass that starts
*after* the kick. APScheduler alone can't promise that: moving a ``max_instances=1`` job's
next run to "now" while it runs is skipped, not queued. So kicks set a pending flag and wake
a thread of ours, and every caller runs passes through one non-blocking lock: whoever holds
it re-checks the flag after releasing, so a kick that lost the race for the lock is served by
the pass that won it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class SingleFlight:
    """Runs ``work`` one pass at a time, on request, from any thread."""

    def __init__(self, work: Callable[[], None], name: str) -> None:
        self._work = work
        self._name = name
        self._pending = threading.Event()
        self._running = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread that serves kicks."""
        if self._thread is None:
            self._closed.clear()
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()

    def kick(self) -> None:
        """Ask for a pass that begins after this call; returns at once."""
        self._pending.set()
        self._wake.set()

    def run(self) -> None:
        """Ask for a pass and run it on this thread, unless another thread is running one
        (which then runs it for us)."""
        self._pending.set()
        self._drain()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop serving kicks and wait for a pass in progress to end."""
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        with self._running:  # a pass started from another thread finishes first
            pass

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._wake.wait()
            self._wake.clear()
            if not self._closed.is_set():
                self._drain()

    def _drain(self) -> None:
        while self._pending.is_set() and not self._closed.is_set():
            if not self._running.acquire(blocking=False):
                return  # the holder sees the pending flag after it releases
            try:
                self._pending.clear()
                self._work()
            except Exception:  # one failed pass must not end the reconciler
                log.exception("%s: pass failed", self._name)
            finally:
                self._running.release()


class ChangeSignal:
    """Tells waiters that something was recorded, so ``wait`` needs no polling loop."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0

    @property
    def count(self) -> int:
        with self._changed:
            return self._count

    def notify(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout_s: float) -> int:
        """Block until the count moves past ``seen`` or ``timeout_s`` passes; return the count."""
        with self._changed:
            self._changed.wait_for(lambda: self._count != seen, timeout=max(0.0, timeout_s))
            return self._count
