"""The Starlette application: one route table per engine dialect."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

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
    app = Starlette(routes=_ROUTES[state.config.engine]())
    app.state.sim = state
    return app
