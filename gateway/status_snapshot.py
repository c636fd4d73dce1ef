"""The models' statuses as the gateway routes by them, without a database read per request.

Reading them is a database query (about 2 ms here, in a worker thread). Per request it was
most of what the gateway added to a stream's first token: at one stream a request came about
every 0.75 s, so a snapshot kept for a second was read again for every other request.

What may be kept, and for how long:

- Every load, unload, crash and ready moment is recorded, and a catalog edit is read in; both
  move the service's change count. A snapshot taken at another count is never used.
- "Loaded" is kept until the count moves. What is not recorded (an external server going
  away) shows as the server refusing the relayed request, which the client hears about either
  way; a snapshot older than ``MAX_AGE_S`` is still read again, behind the request, not in
  front of it.
- "Not loaded" and "not in the catalog" are answers that start a load or refuse the request,
  so they are trusted only from a snapshot younger than ``MAX_AGE_S``: an external server that
  just came up is served, not refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from anyio import to_thread

if TYPE_CHECKING:
    from lifecycle.service import LifecycleService, ModelStatus

log = logging.getLogger(__name__)

MAX_AGE_S: Final = 1.0


def find_model(statuses: Sequence[ModelStatus], name: str) -> ModelStatus | None:
    """A catalog id wins over a served name; a served name must be unambiguous to count."""
    by_id = next((s for s in statuses if s.id == name), None)
    if by_id is not None:
        return by_id
    served = [s for s in statuses if s.served_model == name]
    return served[0] if len(served) == 1 else None


@dataclass(frozen=True, slots=True)
class _Taken:
    changes: int
    at: float
    statuses: Sequence[ModelStatus]


class StatusSnapshot:
    def __init__(
        self, service: Callable[[], LifecycleService], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._service = service
        self._clock = clock
        self._taken: _Taken | None = None
        self._refresh: asyncio.Task[_Taken] | None = None
        self.reads = 0  # database reads so far: what the tests and the perf harness count

    async def find(self, name: str) -> tuple[ModelStatus | None, Sequence[ModelStatus]]:
        """The model ``name`` routes to (None when no catalog model answers to it), and every
        model's status, from which the answer came."""
        service = self._service()
        taken = self._taken
        if taken is not None and taken.changes == service.changes:
            model = find_model(taken.statuses, name)
            fresh = self._clock() - taken.at < MAX_AGE_S
            if model is not None and model.loaded:
                if not fresh:
                    self._read_behind(service)
                return model, taken.statuses
            if fresh:
                return model, taken.statuses
        taken = await self._read(service)
        return find_model(taken.statuses, name), taken.statuses

    async def _read(self, service: LifecycleService) -> _Taken:
        # The count first: a change recorded during the read makes the next caller read again.
        changes, at = service.changes, self._clock()
        self.reads += 1
        statuses = await to_thread.run_sync(service.status)
        taken = _Taken(changes, at, statuses)
        latest = self._taken
        if latest is None or (latest.changes, latest.at) <= (taken.changes, taken.at):
            self._taken = taken
        return taken

    def _read_behind(self, service: LifecycleService) -> None:
        """One read at a time in the background; the request goes on with what it has."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._read(service))
            self._refresh.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[_Taken]) -> None:
    # Nobody awaits a read behind a request: its failure is logged here, and the next request
    # that needs a read makes its own and meets the same failure in the open.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("gateway: reading the models' statuses in the background failed: %r", exc)
