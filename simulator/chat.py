"""POST /v1/chat/completions: streamed or whole replies on a deterministic schedule."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from simulator.loop import sleep_until
from simulator.profiles import PROFILES
from simulator.replies import SSE_DONE, error, sse
from simulator.state import SimState
from simulator.tokens import TokenSchedule, count_prompt_tokens, expected_text, token_text

_request_ids = itertools.count(1)


class BadRequest(Exception):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class ChatPlan:
    """Everything about one reply that is decided when the request arrives."""

    request_id: str
    created: int
    model: str
    schedule: TokenSchedule
    prompt_tokens: int
    stream: bool
    include_usage: bool

    @property
    def usage(self) -> dict[str, int]:
        n = self.schedule.n_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": n,
            "total_tokens": n + self.prompt_tokens,
        }


def _max_tokens(body: dict[str, Any], default: int) -> int:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return default
    # bool is an int subclass in Python; true/false is not a token count.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(400, f"max_tokens must be a whole number >= 1, got {value!r}")
    return value


def _plan(state: SimState, body: Any, arrival: float) -> ChatPlan:
    cfg = state.config
    if not isinstance(body, dict):
        raise BadRequest(400, "request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest(400, "messages must be a non-empty list of objects")
    requested = body.get("model")
    if PROFILES[cfg.engine].strict_model_name and requested not in (None, cfg.model_id):
        raise BadRequest(404, f"The model `{requested}` does not exist.", "NotFoundError")
    stream_options = body.get("stream_options") or {}
    return ChatPlan(
        request_id=f"chatcmpl-sim-{next(_request_ids)}",
        created=int(time.time()),
        model=cfg.model_id,
        schedule=TokenSchedule(
            arrival, cfg.ttft_s, cfg.tokens_per_s, _max_tokens(body, cfg.max_tokens_default)
        ),
        prompt_tokens=count_prompt_tokens(messages),
        stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
    )


def _timing_headers(state: SimState, plan: ChatPlan) -> dict[str, str]:
    cfg = state.config
    return {
        "x-sim-engine": cfg.engine,
        "x-sim-ttft-ms": f"{cfg.ttft_ms:g}",
        "x-sim-tokens-per-s": f"{cfg.tokens_per_s:g}",
        "x-sim-completion-tokens": str(plan.schedule.n_tokens),
    }


def _sim_info(state: SimState, plan: ChatPlan, lateness: list[float]) -> dict[str, Any]:
    """The intended timing (ground truth) plus how late the server itself sent tokens.

    The lateness figures let a benchmark tell the server's own delays apart
    from delays on the way to the client.
    """
    s, clock = plan.schedule, state.clock
    return {
        "engine": state.config.engine,
        "ttft_ms": state.config.ttft_ms,
        "tokens_per_s": state.config.tokens_per_s,
        "completion_tokens": s.n_tokens,
        "prompt_tokens": plan.prompt_tokens,
        "arrival_t": round(clock.epoch_at(s.arrival), 6),
        "first_token_due_t": round(clock.epoch_at(s.due(0)), 6),
        "last_token_due_t": round(clock.epoch_at(s.last_due), 6),
        "max_late_ms": round(max(lateness, default=0.0) * 1000.0, 3),
        "mean_late_ms": round(sum(lateness) / max(len(lateness), 1) * 1000.0, 3),
    }


def _chunk(plan: ChatPlan, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": plan.request_id,
        "object": "chat.completion.chunk",
        "created": plan.created,
        "model": plan.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


async def _frames(state: SimState, plan: ChatPlan) -> AsyncIterator[bytes]:
    role_content = PROFILES[state.config.engine].role_content
    state.metrics.started(plan.prompt_tokens)
    lateness: list[float] = []
    try:
        # The role-only frame goes out at once: a client that takes it for the
        # first token would measure a TTFT of ~0 and tests would notice.
        yield sse(_chunk(plan, {"role": "assistant", "content": role_content}))
        for i in range(plan.schedule.n_tokens):
            late = await sleep_until(plan.schedule.due(i))
            yield sse(_chunk(plan, {"content": token_text(i)}))
            lateness.append(late)  # after the send: the count doubles as "tokens sent"
        last = _chunk(plan, {}, finish_reason="length")
        if plan.include_usage:
            yield sse(last)
            last = {**_chunk(plan, {}), "choices": [], "usage": plan.usage}
        last["sim"] = _sim_info(state, plan, lateness)
        yield sse(last)
        yield SSE_DONE
    finally:
        state.metrics.finished(len(lateness))


async def _whole(state: SimState, plan: ChatPlan) -> dict[str, Any]:
    state.metrics.started(plan.prompt_tokens)
    generated = 0
    try:
        late = await sleep_until(plan.schedule.last_due)
        generated = plan.schedule.n_tokens
    finally:
        state.metrics.finished(generated)
    text = expected_text(plan.schedule.n_tokens)
    return {
        "id": plan.request_id,
        "object": "chat.completion",
        "created": plan.created,
        "model": plan.model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
        ],
        "usage": plan.usage,
        "sim": _sim_info(state, plan, [late]),
    }


async def chat_completions(request: Request) -> Response:
    arrival = time.monotonic()  # first thing: TTFT counts from here
    state: SimState = request.app.state.sim
    try:
        body = json.loads(await request.body())
    except ValueError:
        return error(400, "request body is not valid JSON", "BadRequestError")
    try:
        plan = _plan(state, body, arrival)
    except BadRequest as exc:
        return error(exc.status, str(exc), exc.kind)
    headers = _timing_headers(state, plan)
    if plan.stream:
        return StreamingResponse(_frames(state, plan), media_type="text/event-stream", headers=headers)
    return JSONResponse(await _whole(state, plan), headers=headers)
