"""One small thread per server being watched, keyed by model; the base of the readiness and
liveness watches.

A watcher belongs to one server (its handle's ref and start time, and the url probed): a new
server of the same model replaces it, and ``retain`` ends the watchers of models no longer in
the phase being watched. The tick only reads ``latest``; the threads do the waiting.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from lifecycle.catalog import ModelSpec
from lifecycle.core.values import Handle

T = TypeVar("T")


@dataclass
class Watcher(Generic[T]):
    key: tuple[str, float, str]  # which server: handle ref, its start time, the url probed
    latest: T
    stop: threading.Event = field(default_factory=threading.Event)


class ServerWatch(ABC, Generic[T]):
    thread_prefix: str = "watch"

    def __init__(self) -> None:
        self._watchers: dict[str, Watcher[T]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @abstractmethod
    def _initial(self) -> T:
        """What ``latest`` says before the first probe."""

    @abstractmethod
    def _run(self, watcher: Watcher[T], spec: ModelSpec) -> None:
        """The watcher's thread: probe, update ``watcher.latest``, until ``watcher.stop``."""

    def watch(self, handle: Handle, spec: ModelSpec) -> T:
        """The latest word on this server; starts watching it if nobody does yet."""
        key = (handle.ref, handle.started_at, spec.url)
        with self._lock:
            if self._closed:
                return self._initial()  # the app is exiting: a new thread would outlive it
            watcher = self._watchers.get(spec.id)
            if watcher is not None and watcher.key == key:
                return watcher.latest
            if watcher is not None:
                watcher.stop.set()  # an earlier server of the same model
            watcher = self._watchers[spec.id] = Watcher(key, self._initial())
        name = f"{self.thread_prefix}-{spec.id}"
        threading.Thread(target=self._run, args=(watcher, spec), name=name, daemon=True).start()
        return watcher.latest

    def latest(self, model_id: str) -> T:
        with self._lock:
            watcher = self._watchers.get(model_id)
        return watcher.latest if watcher is not None else self._initial()

    def retain(self, model_ids: Collection[str]) -> None:
        """Stop watching every model not in ``model_ids``."""
        with self._lock:
            for model_id in [m for m in self._watchers if m not in model_ids]:
                self._watchers.pop(model_id).stop.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.retain(())
