"""The Starlette application: one route table per engine dialect."""

from __future__ import annotations

import hmac

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from simulator import handlers as h
from simulator import server_info as info
from simulator.chat import chat_completions
from simulator.state import SimState

_CHAT = "/v1/chat/completions"


def _nim_routes() -> list[Route]:
    return [
        Route("/v1/health/live", h.nim_live),
        Route("/v1/health/ready", h.nim_ready),
        Route("/v1/models", h.gated(h.models)),
        Route(_CHAT, h.gated(chat_completions), methods=["POST"]),
        Route("/v1/metrics", h.metrics),
        Route("/metrics", h.metrics),
    ]


def _llamacpp_routes() -> list[Route]:
    # llama-server answers 503 "Loading model" on every route while it loads.
    table = {
        "/health": h.llamacpp_health,
        "/v1/health": h.llamacpp_health,
        "/v1/models": h.models,
        "/slots": h.slots,
        "/props": info.llamacpp_props,
        "/metrics": h.metrics,
    }
    return [Route(path, h.gated(fn)) for path, fn in table.items()] + [
        Route(_CHAT, h.gated(chat_completions), methods=["POST"]),
        Route("/tokenize", h.gated(info.llamacpp_tokenize), methods=["POST"]),
    ]


def _vllm_routes() -> list[Route]:
    return [
        Route("/health", h.vllm_health),
        Route("/v1/models", h.models),
        Route(_CHAT, h.gated(chat_completions), methods=["POST"]),
        Route("/tokenize", h.gated(info.vllm_tokenize), methods=["POST"]),
        Route("/version", info.vllm_version),
        Route("/metrics", h.metrics),
    ]


_ROUTES = {"nim": _nim_routes, "llamacpp": _llamacpp_routes, "vllm": _vllm_routes}


def build_app(state: SimState) -> Starlette:
    key = state.config.api_key
    middleware = [Middleware(RequireKey, key=key)] if key else []
    app = Starlette(routes=_ROUTES[state.config.engine](), middleware=middleware)
    app.state.sim = state
    return app


class RequireKey:
    """/v1/* wants ``Authorization: Bearer <key>``; health routes stay open, as on real servers."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self._expected = app, f"Bearer {key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/") and "health" not in scope["path"]:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                body = {"error": {"message": "Unauthorized", "type": "authentication_error", "code": 401}}
                await JSONResponse(body, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)
