"""Loads on demand: one load per cold model, however many requests wait for it.

The first request for a model that is not running asks the service to load it (recorded as
``LoadRequested`` by actor ``gateway``) and waits for ready; requests arriving meanwhile
wait on the same load. A waiter that gives up (its client disconnected) leaves; the load
goes on, so the next request finds the model warm.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Final

from anyio import to_thread

from gateway.openai_errors import UNAVAILABLE, GatewayError
from lifecycle.core.errors import LifecycleError, NotEnoughMemory

if TYPE_CHECKING:
    from lifecycle.service import LifecycleService, ModelStatus

log = logging.getLogger(__name__)

ACTOR: Final = "gateway"
RETRY_AFTER_S: Final = 30  # a failed start: long enough for a look at its log, short for a retry
NO_SPEC_WAIT_S: Final = 1.0  # a model gone from the catalog meanwhile: no start to wait for


class ColdStarts:
    def __init__(
        self,
        service: Callable[[], LifecycleService],
        stopping: Callable[[], bool],
        timeout_cap_s: float | None = None,
        *,
        cancel_abandoned: bool = False,
    ) -> None:
        self._service, self._stopping, self._cap = service, stopping, timeout_cap_s
        self._cancel_abandoned = cancel_abandoned
        self._loads: dict[str, asyncio.Task[ModelStatus]] = {}
        self._ours: set[str] = set()  # loads the gateway asked for (not a user's click)
        self._abandoned: set[str] = set()  # loads whose last waiter left (cancel_abandoned)
        self.waiting: Counter[str] = Counter()  # requests waiting per model: the queue's length

    async def ready(self, model: ModelStatus) -> ModelStatus:
        """The model's status once ready; ``GatewayError`` (503) when it can't get there."""
        load = self._loads.get(model.id)
        if load is None:
            load = asyncio.create_task(self._load(model.id), name=f"gateway-load-{model.id}")
            self._loads[model.id] = load
            load.add_done_callback(lambda done: self._forget(model.id, done))
        self.waiting[model.id] += 1
        try:
            # Shielded: a waiter that is cancelled (its client left) leaves the load running.
            return await asyncio.shield(load)
        finally:
            self.waiting[model.id] -= 1
            if self._cancel_abandoned and not self.waiting[model.id] and not load.done():
                self._abandon(model.id, load)

    def _abandon(self, model_id: str, load: asyncio.Task[ModelStatus]) -> None:
        """The last waiter left a load the gateway started: stop waiting, and unload."""
        load.cancel()
        self._abandoned.add(model_id)  # its wait, in a worker thread, ends at its next look
        if model_id in self._ours:
            log.info("gateway: every request waiting for %s left; unloading it", model_id)
            unload = to_thread.run_sync(self._service().unload, model_id, ACTOR, "abandoned")
            asyncio.ensure_future(unload).add_done_callback(_log_failure)

    def _forget(self, model_id: str, done: asyncio.Task[ModelStatus]) -> None:
        if self._loads.get(model_id) is done:
            del self._loads[model_id]
            self._ours.discard(model_id)
        if not done.cancelled():
            done.exception()  # retrieved, so a load nobody waits for any more is not reported as lost

    async def _load(self, model_id: str) -> ModelStatus:
        self._abandoned.discard(model_id)  # a fresh load; an abandoned one's wait has ended or ends now
        service = self._service()

        def ask() -> None:
            if service.status_of(model_id).desired != "loaded":
                self._ours.add(model_id)  # not a user's load: the gateway may take it back
            service.load(model_id, ACTOR)

        try:
            await to_thread.run_sync(ask)
        except NotEnoughMemory as exc:  # no retry helps until something is unloaded
            raise GatewayError(409, str(exc), "not_enough_memory") from None
        except LifecycleError as exc:
            raise _not_ready(model_id, str(exc)) from None
        spec = service.catalog.get(model_id)
        timeout = spec.startup_timeout_s if spec is not None else NO_SPEC_WAIT_S
        if self._cap is not None:
            timeout = min(timeout, self._cap)
        # The app's exit, or every waiter gone with the load abandoned, ends the wait early.
        abandon = partial(self._gave_up, model_id)
        status = await to_thread.run_sync(partial(service.wait, abandon=abandon), model_id, "ready", timeout)
        if status.loaded:
            return status
        if status.phase == "failed":
            raise _not_ready(model_id, status.reason or status.last_error or status.status)
        if self._stopping():
            raise _not_ready(model_id, "the app is stopping")
        raise _not_ready(model_id, f"it was not ready within {timeout:g} s ({status.status})")

    def _gave_up(self, model_id: str) -> bool:
        return self._stopping() or model_id in self._abandoned


def _log_failure(done: asyncio.Future[object]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("gateway: unloading an abandoned load failed: %s", done.exception())


def _not_ready(model_id: str, reason: str) -> GatewayError:
    log.warning("gateway: %s could not be loaded: %s", model_id, reason)
    return GatewayError(
        503,
        f"{model_id} could not be loaded: {reason}",
        "model_not_ready",
        UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
