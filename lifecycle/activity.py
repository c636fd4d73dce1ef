"""Who is using which model right now: gateway requests, chat streams and benchmark runs.

The reconciler reads it to unload a model only once nothing has used it for its idle time,
and never while something does. Uses are counted, not flagged: two chats and a benchmark on
one model keep it busy until the last of them ends.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Activity:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._uses: Counter[str] = Counter()
        self._last_used: dict[str, float] = {}

    @contextmanager
    def using(self, model_id: str) -> Iterator[None]:
        self.begin(model_id)
        try:
            yield
        finally:
            self.end(model_id)

    def begin(self, model_id: str) -> None:
        with self._lock:
            self._uses[model_id] += 1

    def end(self, model_id: str) -> None:
        with self._lock:
            self._uses[model_id] = max(self._uses[model_id] - 1, 0)
            self._last_used[model_id] = self._clock()

    def busy(self, model_id: str) -> bool:
        with self._lock:
            return self._uses[model_id] > 0

    def last_used(self, model_id: str) -> float | None:
        with self._lock:
            return self._last_used.get(model_id)
