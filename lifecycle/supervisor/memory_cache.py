"""Each model's ``PlannerMemory``, kept up to date from its event stream one new event at a time.

The projection row says which stream version is current; only when that moved are the new
events read (one indexed range query), so the reconciler's tick and the status view stay flat
in the number of stored events.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

from lifecycle.core.events import model_stream
from lifecycle.core.memory import PlannerMemory, fold_memory
from lifecycle.core.policy import RestartPolicy
from lifecycle.core.projection import ModelState

if TYPE_CHECKING:
    from db.store import EventStore

# On first sight of a model only its latest events are read: the crash window and the load-time
# median need tens of events, and a year of memory should not slow down the app's start.
FIRST_READ_EVENTS: Final = 256


class MemoryCache:
    def __init__(self, store: EventStore, policy: RestartPolicy) -> None:
        self._store = store
        self._policy = policy
        self._entries: dict[str, PlannerMemory] = {}
        self._lock = threading.Lock()

    def get(self, state: ModelState) -> PlannerMemory:
        """The model's memory as of ``state.version`` (or newer)."""
        with self._lock:
            cached = self._entries.get(state.model_id)
        if cached is not None and cached.version >= state.version:
            return cached
        if cached is None:
            cached = PlannerMemory(version=max(0, state.version - FIRST_READ_EVENTS))
        events = self._store.read_stream(model_stream(state.model_id), after_version=cached.version)
        memory = fold_memory(events, self._policy, cached)
        with self._lock:
            current = self._entries.get(state.model_id)
            if current is None or current.version < memory.version:
                self._entries[state.model_id] = memory
        return memory
