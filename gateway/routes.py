"""The /v1 routes: list the catalog, and pass chat, completion and embedding requests to the
model they name, loading it first when it is not running. Also /metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from anyio import to_thread
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router, request_response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.cold_start import RETRY_AFTER_S, ColdStarts
from gateway.metrics import Metrics
from gateway.openai_errors import AUTHENTICATION, UNAVAILABLE, GatewayError
from gateway.status_snapshot import StatusSnapshot
from gateway.upstream import Upstream
from lifecycle.api.auth import bearer_matches

if TYPE_CHECKING:
    from lifecycle.service import LifecycleService, ModelStatus

log = logging.getLogger(__name__)

PREFIX: Final = "/v1"
# The client went away while its request waited (nginx's name for it; nobody reads it).
CLIENT_CLOSED: Final = 499
BODY_MAX_BYTES: Final = 32 * 1024 * 1024  # a long context is a few MB of JSON; this is far past it
UNRESOLVED: Final = "(none)"
STARTING_RETRY_S: Final = 5
# The usage block is in the last frames of a stream (or anywhere in a short JSON answer).
USAGE_TAIL_BYTES: Final = 4096


class Gateway:
    def __init__(
        self,
        service: Callable[[], LifecycleService],
        stopping: Callable[[], bool],
        load_timeout_s: float | None = None,
        *,
        cancel_abandoned: bool = False,
    ) -> None:
        service = _serving(service)
        self._service = service
        self._activity = lambda: service().activity
        self.cold = ColdStarts(service, stopping, load_timeout_s, cancel_abandoned=cancel_abandoned)
        self.upstream = Upstream()
        self.in_flight: Counter[str] = Counter()
        self.metrics = Metrics(service, self.in_flight, self.cold.waiting)
        self._statuses = StatusSnapshot(service)

    async def models(self, _request: Request) -> Response:
        try:
            statuses = await to_thread.run_sync(self._service().status)
        except GatewayError as exc:
            return exc.response()
        data = [
            {
                "id": s.id,
                "object": "model",
                "created": 0,
                "owned_by": s.engine,
                "served_model": s.served_model,
                "state": s.phase,
                "status": s.status,
                "loaded": s.loaded,
            }
            for s in statuses
        ]
        return JSONResponse({"object": "list", "data": data})

    async def forward(self, request: Request) -> Response:
        started = time.perf_counter()
        model_id = UNRESOLVED  # a label for what never named a catalog model: names are unbounded
        try:
            body = await _json_body(request)
            model = await self._model(body)
            model_id = model.id
            if not model.loaded:
                model = await self._wait_ready(request, model)
                if model is None:
                    self.metrics.requests.labels(model_id, str(CLIENT_CLOSED)).inc()
                    return Response(status_code=CLIENT_CLOSED)
            accept = request.headers.get("accept")
            activity = self._activity()
            activity.begin(model_id)  # ends with the relay: a model answering is not idle
            try:
                key = self._service().upstream_key(model.id)
                response = await self.upstream.forward(model, request.url.path, body, accept, key)
            except BaseException:
                activity.end(model_id)
                raise
        except GatewayError as exc:
            self.metrics.requests.labels(model_id, str(exc.status)).inc()
            return exc.response()
        self.metrics.requests.labels(model_id, str(response.status_code)).inc()
        self.in_flight[model_id] += 1
        watch = _FirstByteAndTail(self.metrics, model_id, started)
        response.body_iterator = watch.relay(response.body_iterator)

        def ended() -> None:
            self.in_flight[model_id] -= 1
            activity.end(model_id)
            self.metrics.count_usage(model_id, watch.tail)

        response.on_end(ended)
        return response

    async def metrics_page(self, _request: Request) -> Response:
        try:
            page = await to_thread.run_sync(generate_latest, self.metrics.registry)
        except GatewayError as exc:
            return exc.response()
        return Response(page, media_type=CONTENT_TYPE_LATEST)

    async def _model(self, body: dict[str, Any]) -> ModelStatus:
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise GatewayError(400, "model is required: a catalog id or a served model name", "missing_model")
        model, statuses = await self._statuses.find(name)
        if model is None:
            known = ", ".join(s.id for s in statuses) or "none: the catalog is empty"
            message = f"model {name!r} is not in the catalog; known models: {known}"
            raise GatewayError(404, message, "model_not_found")
        if not model.loaded and not model.can_load:
            how = model.manual_start or f"start it by hand so that it answers at {model.url}"
            raise GatewayError(503, f"{model.id} is not running and the app does not start it: {how}",
                               "model_not_running", UNAVAILABLE)  # fmt: skip
        if model.phase == "ready" and not model.available:
            # Its server was up, but its engine or node can't be reached now: waiting for a load
            # that is already there would only time out.
            raise GatewayError(503, f"{model.id} can't be reached: {model.reason}", "model_unreachable",
                               UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
        return model

    async def _wait_ready(self, request: Request, model: ModelStatus) -> ModelStatus | None:
        """The model once ready, or None when the client left first (the load goes on)."""
        ready = asyncio.ensure_future(self.cold.ready(model))
        gone = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait({ready, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if ready.done():
            return ready.result()
        ready.cancel()
        log.info("gateway: a client left while %s was loading; the load goes on", model.id)
        return None


def _serving(service: Callable[[], LifecycleService]) -> Callable[[], LifecycleService]:
    """The service, or a 503 in OpenAI's shape while the app starts or stops (there is none)."""

    def get() -> LifecycleService:
        try:
            return service()
        except Exception as exc:
            raise GatewayError(
                503, "the app is starting or stopping; try again shortly", "app_not_running", UNAVAILABLE,
                headers={"Retry-After": str(STARTING_RETRY_S)},
            ) from exc  # fmt: skip

    return get


class _FirstByteAndTail:
    """Times an answer's first byte and keeps its tail, where a usage block would be."""

    def __init__(self, metrics: Metrics, model_id: str, started: float) -> None:
        self._metrics, self._model_id, self._started = metrics, model_id, started
        self.tail = b""

    async def relay(self, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for chunk in chunks:
            if not self.tail:
                elapsed = time.perf_counter() - self._started
                self._metrics.first_byte.labels(self._model_id).observe(elapsed)
            self.tail = (self.tail + chunk)[-USAGE_TAIL_BYTES:]
            yield chunk


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next message is the client going away.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > BODY_MAX_BYTES:
        raise GatewayError(413, f"the request body is over {BODY_MAX_BYTES // 2**20} MiB", "body_too_large")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise GatewayError(400, f"the body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "the body must be a JSON object", "invalid_body")
    return body


class OpenAIBearer:
    """``Authorization: Bearer <DXG_API_TOKEN>`` on /v1 when a token is set, refused in OpenAI's shape."""

    def __init__(self, app: ASGIApp, token: SecretStr | None) -> None:
        self.app = app
        self._token = (token.get_secret_value() if token is not None else "") or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._token is not None:
            authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not bearer_matches(authorization, self._token):
                message = "a valid API token is required (Authorization: Bearer <DXG_API_TOKEN>)"
                refusal = GatewayError(401, message, "invalid_api_key", AUTHENTICATION)
                await refusal.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class GatewayMount(Mount):
    """/v1, knowing its gateway: ``Shortcut`` routes to it and closes its connections at exit."""

    def __init__(
        self, gateway: Gateway, routes: Sequence[BaseRoute], middleware: Sequence[Middleware]
    ) -> None:
        super().__init__(PREFIX, routes=routes, middleware=middleware)
        self.gateway = gateway


class Shortcut:
    """/v1 straight to its routes, past the middleware of the server the app runs in (Streamlit's
    sessions, gzip and error pages: about 12% of the CPU per relayed frame, and nothing /v1
    needs). Installed after the Host and Origin checks, which still apply."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.mounts = [r for r in routes if isinstance(r, GatewayMount)]
        self.router = Router(routes=list(self.mounts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_at_exit(send))
            return
        path = scope.get("path", "")
        if scope["type"] == "http" and self.router.routes and path.startswith(PREFIX + "/"):
            await self.router(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _closing_at_exit(self, send: Send) -> Send:
        async def send_after_closing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                for mount in self.mounts:  # the app's own exit is done: its upstream sockets go
                    await mount.gateway.upstream.aclose()
            await send(message)

        return send_after_closing


def routes(
    service: Callable[[], LifecycleService],
    token: SecretStr | None,
    stopping: Callable[[], bool],
    load_timeout_s: float | None = None,
    *,
    cancel_abandoned: bool = False,
) -> list[BaseRoute]:
    gateway = Gateway(service, stopping, load_timeout_s, cancel_abandoned=cancel_abandoned)
    forward = gateway.forward
    return [
        Route("/metrics", OpenAIBearer(request_response(gateway.metrics_page), token), methods=["GET"]),
        GatewayMount(
            gateway,
            routes=[
                Route("/models", gateway.models, methods=["GET"]),
                Route("/chat/completions", forward, methods=["POST"]),
                Route("/completions", forward, methods=["POST"]),
                Route("/embeddings", forward, methods=["POST"]),
            ],
            middleware=[Middleware(OpenAIBearer, token=token)],
        ),
    ]
