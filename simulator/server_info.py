"""Routes that describe the served model: ``/tokenize`` (llama.cpp and vLLM), ``/props``, ``/version``.

``/tokenize`` uses the simulator's one tokenizer (``simulator.tokens``), so its
counts equal the ``prompt_tokens`` a chat request with the same text reports.
NIM has no such route; its table simply leaves it out (404).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulator.chat_request import BadRequest, check_model
from simulator.replies import error
from simulator.state import SimState
from simulator.tokens import prompt_token_ids, token_id, token_ids, words

SIMULATOR_VERSION = "sim-1.0"


def _state(request: Request) -> SimState:
    return request.app.state.sim


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise BadRequest(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "request body must be a JSON object")
    return body


async def llamacpp_tokenize(request: Request) -> Response:
    """``{"content": text}`` -> ``{"tokens": [ids]}``; ``with_pieces`` gives ``{"id", "piece"}`` pairs.

    ``add_special`` is accepted; the simulator's tokenizer has no BOS or other special
    tokens, so it changes nothing and the count always equals the chat usage.
    """
    try:
        body = await _json_object(request)
        content = body.get("content", "")
        if not isinstance(content, str):
            raise BadRequest(400, "content must be a string")
    except BadRequest as exc:
        return error(exc.status, str(exc), exc.kind)
    if body.get("with_pieces"):
        return JSONResponse({"tokens": [{"id": token_id(w), "piece": w} for w in words(content)]})
    return JSONResponse({"tokens": token_ids(content)})


async def vllm_tokenize(request: Request) -> Response:
    """``{"model", "prompt"}`` or ``{"model", "messages"}`` -> ``{"count", "max_model_len", "tokens"}``."""
    state = _state(request)
    try:
        body = await _json_object(request)
        check_model(state.config, body.get("model"))
        if isinstance(body.get("messages"), list):
            ids = prompt_token_ids([m for m in body["messages"] if isinstance(m, dict)])
        elif isinstance(body.get("prompt"), str):
            ids = token_ids(body["prompt"])
        else:
            raise BadRequest(400, "give either prompt (a string) or messages (a list)")
    except BadRequest as exc:
        return error(exc.status, str(exc), exc.kind)
    return JSONResponse(
        {"count": len(ids), "max_model_len": state.config.max_model_len, "tokens": ids, "token_strs": None}
    )


async def llamacpp_props(request: Request) -> Response:
    cfg = _state(request).config
    return JSONResponse(
        {
            "default_generation_settings": {"n_ctx": cfg.max_model_len, "params": {"n_predict": -1}},
            # llama-server's parallel slots; the simulator without --max-batch has no limit,
            # and reports the one slot that /slots shows.
            "total_slots": cfg.max_batch or 1,
            "model_path": f"/models/{cfg.model_id}.gguf",
            "build_info": f"b0-{SIMULATOR_VERSION}",
            "chat_template": "",
        }
    )


async def vllm_version(request: Request) -> Response:
    return JSONResponse({"version": SIMULATOR_VERSION})
