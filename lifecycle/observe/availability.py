"""``Runtime.check`` answers, cached for a moment and refreshed in the background.

A check can be slow (Docker API calls, an HTTP probe of an external server), and the UI asks
for every model on every rerun. So an answer is reused for ``ttl_s``; an older one is still
returned at once while a background refresh replaces it, and only a model never checked
before waits for its check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from lifecycle.catalog import ModelSpec
from lifecycle.core.values import Availability
from lifecycle.runtimes.protocol import RuntimeFailure
from lifecycle.runtimes.registry import Runtimes

log = logging.getLogger(__name__)

DEFAULT_TTL_S: Final = 2.0


@dataclass(frozen=True)
class _Entry:
    spec: ModelSpec
    answer: Availability
    at: float


class AvailabilityCache:
    def __init__(
        self, runtimes: Runtimes, *, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._runtimes = runtimes
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dxg-check")

    def get(self, spec: ModelSpec) -> Availability:
        """A recent answer; stale ones are returned as they are and refreshed off this thread."""
        with self._lock:
            entry = self._entries.get(spec.id)
            if entry is None or entry.spec != spec:
                entry = None
            elif self._clock() - entry.at > self._ttl_s and spec.id not in self._refreshing:
                self._refreshing.add(spec.id)
            else:
                return entry.answer
        if entry is None:
            return self.refresh(spec)
        self._submit(spec)
        return entry.answer

    def refresh(self, spec: ModelSpec) -> Availability:
        """Check now (commands use this: a load must not be refused on a stale answer)."""
        answer = check(self._runtimes, spec)
        with self._lock:
            self._entries[spec.id] = _Entry(spec, answer, self._clock())
        return answer

    def prime(self, specs: Iterable[ModelSpec]) -> None:
        """Check these models in the background, so the first status page needs no waiting."""
        for spec in specs:
            with self._lock:
                if spec.id in self._refreshing:
                    continue
                self._refreshing.add(spec.id)
            self._submit(spec)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, spec: ModelSpec) -> None:
        """Refresh in the background; the caller has marked ``spec`` as refreshing."""
        try:
            self._pool.submit(self._refresh_in_background, spec)
        except RuntimeError:  # closed: the app is shutting down
            with self._lock:
                self._refreshing.discard(spec.id)

    def _refresh_in_background(self, spec: ModelSpec) -> None:
        try:
            self.refresh(spec)
        finally:
            with self._lock:
                self._refreshing.discard(spec.id)


def check(runtimes: Runtimes, spec: ModelSpec) -> Availability:
    """``Runtime.check`` that never raises: a failing check reads as Offline with the reason."""
    try:
        return runtimes.for_spec(spec).check(spec)
    except RuntimeFailure as exc:
        return Availability.offline(str(exc))
    except Exception as exc:  # a bug in a runtime must not break the whole status page
        log.exception("availability check of %s failed", spec.id)
        return Availability.offline(f"the {spec.runtime} runtime could not check it: {exc}")
