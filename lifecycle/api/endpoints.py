"""The REST API under /api: the same doors as the UI (``LifecycleService``), for scripts.

Every answer is JSON. Errors are ``{"error": <code>, "detail": <message>}`` and never a
traceback; the wait outcomes below add ``"status"`` (the model as ``GET /api/models/{id}``
shows it).

====================================  ========================================================
GET  /api/health                      200 ``service.health()`` when ok, 503 with the same body
                                      when not; the only route that needs no token (without
                                      it, when one is set, the body is only ``{"ok": ...}``)
GET  /api/models                      200 ``{"models": [status, ...]}``
GET  /api/models/{id}                 200 status + ``"events"``: the last 20, newest first
POST /api/models/{id}/load            202 status (the load is requested and runs in the
                                      background). ``?wait=true&timeout_s=N`` (default 120,
                                      max 3600) waits: 200 ready; 409 ``load_failed`` (the
                                      reconciler gave up; detail is the reason); 409
                                      ``superseded`` (an unload came in meanwhile); 504
                                      ``timeout`` (still loading: try again or poll); 503
                                      ``shutting_down`` (the app is exiting)
POST /api/models/{id}/unload          202 status; with ``?wait=true``: 200 stopped, 409
                                      ``superseded``, 504 ``timeout``, 503 ``shutting_down``
GET  /api/models/{id}/logs?tail=N     200 ``{"model", "tail", "lines": [...]}``, N 1-5000
                                      (default 200); ``text/plain`` when the client's Accept
                                      asks for it and not for JSON
GET  /api/events?model=&after=&limit= 200 ``{"events": [...], "cursor": n}``: newest first
                                      when ``after`` is 0, else the events after position
                                      ``after`` in order (a feed: pass back ``cursor``);
                                      limit 1-1000 (default 100)
====================================  ========================================================

Errors: 401 ``unauthorized`` (token on and missing/wrong, see ``lifecycle.api.auth``), 404
``unknown_model`` / ``not_found``, 405 ``method_not_allowed``, 409 ``cannot_load`` (external
model: how to start it by hand; Offline: the reason), 422 ``invalid_request`` (a bad query
parameter), 503 ``not_running`` (the app is starting or stopping), 500 ``internal_error``
(logged with its traceback on the server only).

Service calls block (SQLite, Docker, process control), so they run in worker threads, never
on the event loop that also serves the UI. Waits get their own thread pool so that many
waiting scripts cannot starve the UI's static files and the other API calls.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import anyio
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from lifecycle.api.auth import AUTHENTICATED, BearerAuthMiddleware
from lifecycle.api.errors import ApiError, error_response, json_errors, provided
from lifecycle.api.path_guard import ApiPathGuard
from lifecycle.api.request_guard import HostPolicy, RequestGuard
from lifecycle.api.session import AUTH_PREFIX
from lifecycle.core.events import MODEL_ID_RE, RecordedEvent, model_id_of, redact
from lifecycle.service import ModelStatus

if TYPE_CHECKING:
    from lifecycle.service import LifecycleService

log = logging.getLogger(__name__)

PREFIX: Final = "/api"
ACTOR: Final = "api"
DETAIL_EVENTS: Final = 20
DEFAULT_WAIT_S: Final = 120.0
MAX_WAIT_S: Final = 3600.0
# Threads for ?wait=true requests; each holds one for up to timeout_s.
WAIT_THREADS: Final = 32
# How often a wait looks up from the service to check whether the app is exiting.
WAIT_SLICE_S: Final = 0.5
# The phases that end a wait: failed ends a wait for ready (the reconciler gave up).
GOALS: Final[dict[str, frozenset[str]]] = {
    "ready": frozenset({"ready", "failed"}),
    "stopped": frozenset({"stopped"}),
}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})

N = TypeVar("N", int, float)
ServiceProvider = Callable[[], "LifecycleService"]
StopFlag = Callable[[], bool]
Until = Literal["ready", "stopped"]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors inside /api (unknown path, wrong method) in the API's JSON shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, exc.detail, headers=exc.headers)


# --- query parameters ----------------------------------------------------------------------------


def _invalid(name: str, raw: str, expected: str) -> ApiError:
    return ApiError(422, "invalid_request", f"query parameter {name}={raw!r} is invalid: expected {expected}")


def _number_param(
    request: Request,
    name: str,
    default: N,
    parse: Callable[[str], N],
    valid: Callable[[N], bool],
    expected: str,
) -> N:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise _invalid(name, raw, expected) from None
    if not valid(value):
        raise _invalid(name, raw, expected)
    return value


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    expected = f"an integer from {low} to {high}"
    return _number_param(request, name, default, int, lambda value: low <= value <= high, expected)


def float_param(request: Request, name: str, default: float, high: float) -> float:
    """A positive, finite number of at most ``high``."""
    expected = f"a number of seconds above 0 and at most {high:g}"
    return _number_param(
        request, name, default, float, lambda value: math.isfinite(value) and 0 < value <= high, expected
    )


def bool_param(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _invalid(name, raw, "true or false")


def evict_param(request: Request) -> bool:
    """``?evict=lru``: make room by unloading the least recently used idle models."""
    raw = request.query_params.get("evict")
    if raw is None:
        return False
    if raw.strip().lower() == "lru":
        return True
    raise _invalid("evict", raw, "lru (unload the least recently used idle models to make room)")


def model_id_param(value: str) -> str:
    # A malformed id cannot name a model; saying so early keeps it out of stream names and paths.
    if not MODEL_ID_RE.fullmatch(value):
        raise ApiError(404, "unknown_model", f"no model with id {value!r}")
    return value


# --- JSON shapes -----------------------------------------------------------------------------------


def event_json(recorded: RecordedEvent) -> dict[str, Any]:
    return {
        "position": recorded.position,
        "stream": recorded.stream,
        "model": model_id_of(recorded.stream),
        "version": recorded.version,
        "type": recorded.type,
        "ts": recorded.ts,
        "actor": recorded.actor,
        # Stored payloads are redacted on append; this also covers rows written before that rule.
        "payload": redact(recorded.event.payload()),
    }


def wants_text(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "text/plain" in accept and "application/json" not in accept


def wait_outcome(status: ModelStatus, until: Until, timeout_s: float) -> Response:
    """The answer to a ``?wait=true`` command, from the status the wait ended with."""
    body = status.to_json()
    wanted = "loaded" if until == "ready" else "unloaded"
    if (status.loaded if until == "ready" else status.phase == "stopped") and status.desired == wanted:
        return JSONResponse(body)
    if status.desired != wanted:
        detail = f"{status.id} was asked to be {status.desired} while waiting for it to be {until}"
        raise ApiError(409, "superseded", detail, status=body)
    if until == "ready" and status.phase == "failed":
        reason = status.reason or status.last_error or status.status
        raise ApiError(409, "load_failed", f"{status.id} failed to load: {reason}", status=body)
    detail = (
        f"{status.id} is not {until} after {timeout_s:g}s ({status.status}); it carries on in the background"
    )
    raise ApiError(504, "timeout", detail, status=body)


# --- handlers ------------------------------------------------------------------------------------------


class Api:
    """The /api handlers over one service; ``routes()`` mounts them with auth and JSON errors."""

    def __init__(self, service: ServiceProvider, stopping: StopFlag) -> None:
        self._service_provider = service
        self._stopping = stopping
        # Created on first use: an anyio limiter belongs to the event loop that serves us.
        self._wait_limiter: anyio.CapacityLimiter | None = None

    def _service(self) -> LifecycleService:
        return provided(self._service_provider, "lifecycle service")

    async def _wait(
        self, service: LifecycleService, model_id: str, until: Until, timeout_s: float
    ) -> ModelStatus:
        if self._wait_limiter is None:
            self._wait_limiter = anyio.CapacityLimiter(WAIT_THREADS)
        waiting = functools.partial(self._wait_in_slices, service, model_id, until, timeout_s)
        status = await anyio.to_thread.run_sync(waiting, limiter=self._wait_limiter)
        if self._stopping() and status.phase not in GOALS[until]:
            detail = f"the app is shutting down; {status.id} is {status.status}"
            raise ApiError(503, "shutting_down", detail, status=status.to_json())
        return status

    def _wait_in_slices(
        self, service: LifecycleService, model_id: str, until: Until, timeout_s: float
    ) -> ModelStatus:
        # The server finishes in-flight requests before it stops the service: a wait must notice
        # the exit on its own, or a script waiting for a 30-minute load would hold the app up.
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            status = service.wait(model_id, until, min(remaining, WAIT_SLICE_S))
            if status.phase in GOALS[until] or remaining <= WAIT_SLICE_S or self._stopping():
                return status

    @json_errors
    async def health(self, request: Request) -> Response:
        report = await run_in_threadpool(self._service().health)
        status_code = 200 if report.get("ok") else 503
        if not getattr(request.state, AUTHENTICATED, True):
            # Liveness for anyone; paths, Docker details and catalog errors only with the token.
            return JSONResponse({"ok": bool(report.get("ok"))}, status_code=status_code)
        return JSONResponse(report, status_code=status_code)

    @json_errors
    async def models(self, request: Request) -> Response:
        statuses = await run_in_threadpool(self._service().status)
        return JSONResponse({"models": [s.to_json() for s in statuses]})

    @json_errors
    async def model(self, request: Request) -> Response:
        model_id = model_id_param(request.path_params["model_id"])
        service = self._service()
        status = await run_in_threadpool(service.status_of, model_id)
        events = await run_in_threadpool(service.history, model_id, DETAIL_EVENTS)
        return JSONResponse({**status.to_json(), "events": [event_json(e) for e in events]})

    @json_errors
    async def load(self, request: Request) -> Response:
        return await self._command(request, "load")

    @json_errors
    async def unload(self, request: Request) -> Response:
        return await self._command(request, "unload")

    async def _command(self, request: Request, command: Literal["load", "unload"]) -> Response:
        model_id = model_id_param(request.path_params["model_id"])
        # Parameters first: a bad one must not leave a half-done command behind.
        wait = bool_param(request, "wait")
        timeout_s = float_param(request, "timeout_s", DEFAULT_WAIT_S, MAX_WAIT_S)
        evict = evict_param(request) if command == "load" else False
        service = self._service()
        if command == "load":
            status = await run_in_threadpool(partial(service.load, evict=evict), model_id, ACTOR)
        else:
            status = await run_in_threadpool(service.unload, model_id, ACTOR)
        if not wait:
            return JSONResponse(status.to_json(), status_code=202)
        until: Until = "ready" if command == "load" else "stopped"
        return wait_outcome(await self._wait(service, model_id, until, timeout_s), until, timeout_s)

    @json_errors
    async def logs(self, request: Request) -> Response:
        model_id = model_id_param(request.path_params["model_id"])
        tail = int_param(request, "tail", 200, 1, 5000)
        # The service answers for models with a log or a history, also ones since removed.
        text = await run_in_threadpool(self._service().logs, model_id, tail)
        if wants_text(request):
            return PlainTextResponse(text)
        return JSONResponse({"model": model_id, "tail": tail, "lines": text.splitlines()})

    @json_errors
    async def events(self, request: Request) -> Response:
        after = int_param(request, "after", 0, 0, 2**63 - 1)
        limit = int_param(request, "limit", 100, 1, 1000)
        raw_model = request.query_params.get("model") or None
        model_id = None if raw_model is None else model_id_param(raw_model)
        events = await run_in_threadpool(self._service().history, model_id, limit, after)
        cursor = max((e.position for e in events), default=after)
        return JSONResponse({"events": [event_json(e) for e in events], "cursor": cursor})


def routes(
    service: ServiceProvider,
    token: SecretStr | None,
    stopping: StopFlag = lambda: False,
    extra: Sequence[BaseRoute] = (),
) -> list[BaseRoute]:
    """The /api mount: bearer auth (health exempt) outside, JSON routing errors inside.

    ``stopping`` says the process was told to exit; long waits then end early with 503.
    ``extra`` routes (the benchmark's) share the mount, so its auth and errors apply to them;
    they come in from the app, as the lifecycle never imports what builds on it.
    """
    api = Api(service, stopping)
    return [
        Mount(
            PREFIX,
            routes=[
                Route("/health", api.health, methods=["GET"]),
                Route("/models", api.models, methods=["GET"]),
                Route("/models/{model_id}", api.model, methods=["GET"]),
                Route("/models/{model_id}/load", api.load, methods=["POST"]),
                Route("/models/{model_id}/unload", api.unload, methods=["POST"]),
                Route("/models/{model_id}/logs", api.logs, methods=["GET"]),
                Route("/events", api.events, methods=["GET"]),
                *extra,
            ],
            middleware=[
                Middleware(BearerAuthMiddleware, token=token, public_paths=["/health"]),
                Middleware(ExceptionMiddleware, handlers={HTTPException: _http_error}),
            ],
        )
    ]


def middleware(
    bind_host: str, allowed_hosts: Collection[str] = (), other_api_prefixes: Sequence[str] = ()
) -> list[Middleware]:
    """What the app wraps around everything, outermost first: the Host, Origin and form checks
    (``request_guard``, also on ``other_api_prefixes``: the gateway's /v1), then hostile /api
    paths answered in JSON (``path_guard``)."""
    policy = HostPolicy(bind_host, allowed_hosts)
    if policy.any_host:
        log.warning(
            "listening on %r and answering to any Host name: set DXG_ALLOWED_HOSTS to the names "
            "you reach the app by, so a rebound DNS name cannot reach it",
            bind_host,
        )
    return [
        Middleware(
            RequestGuard,
            policy=policy,
            api_prefixes=[PREFIX, *other_api_prefixes],
            form_prefixes=[AUTH_PREFIX],
        ),
        Middleware(ApiPathGuard, prefixes=[PREFIX]),
    ]
