"""Health, model list, metrics and slot routes, and the readiness gate around them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from simulator.profiles import PROFILES
from simulator.replies import error
from simulator.state import SimState

Handler = Callable[[Request], Awaitable[Response]]


def _state(request: Request) -> SimState:
    return request.app.state.sim


def not_ready(engine: str) -> Response:
    """The 503 each engine gives for model routes while it loads."""
    if engine == "llamacpp":
        return error(503, "Loading model", "unavailable_error")
    return error(503, "Model is not ready yet: it is still loading.", "ServiceUnavailableError")


def gated(handler: Handler) -> Handler:
    """Answer 503 instead of ``handler`` until the simulated load has finished."""

    async def wrapper(request: Request) -> Response:
        state = _state(request)
        if not state.is_ready():
            return not_ready(state.config.engine)
        return await handler(request)

    return wrapper


async def nim_live(request: Request) -> Response:
    return JSONResponse({"object": "health.response", "message": "Service is live."})


async def nim_ready(request: Request) -> Response:
    if not _state(request).is_ready():
        return JSONResponse(
            {"object": "health.response", "message": "Service is not ready."}, status_code=503
        )
    return JSONResponse({"object": "health.response", "message": "Service is ready."})


async def llamacpp_health(request: Request) -> Response:
    # Wrapped in ``gated`` by the route table: 503 "Loading model" comes from there.
    return JSONResponse({"status": "ok"})


async def vllm_health(request: Request) -> Response:
    # vLLM answers an empty 200 while its engine is alive.
    return Response(status_code=200)


async def models(request: Request) -> Response:
    state = _state(request)
    cfg = state.config
    # vLLM with --serve-while-loading lists nothing until loaded: readiness is
    # "the model is listed", the same gate a probe applies to real vLLM.
    listed = [cfg.model_id] if state.is_ready() else []
    data = [
        {
            "id": model_id,
            "object": "model",
            "created": int(state.clock.epoch),
            "owned_by": PROFILES[cfg.engine].owned_by,
            "root": model_id,
            "parent": None,
        }
        for model_id in listed
    ]
    return JSONResponse({"object": "list", "data": data})


async def metrics(request: Request) -> Response:
    state = _state(request)
    body = state.metrics.render(state.config.engine, state.config.model_id)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")


async def slots(request: Request) -> Response:
    state = _state(request)
    # One slot like a default llama-server; the simulator itself has no slot limit.
    slot = {
        "id": 0,
        "id_task": -1,
        "n_ctx": state.config.max_model_len,
        "is_processing": state.metrics.running > 0,
    }
    return JSONResponse([slot])
