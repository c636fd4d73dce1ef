"""POST /v1/chat/completions: streamed or whole replies on a schedule fixed at arrival."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from simulator import chat_reply as reply
from simulator.chat_reply import ChatPlan
from simulator.chat_request import BadRequest, parse_chat_request
from simulator.loop import sleep_until
from simulator.profiles import PROFILES
from simulator.replies import SSE_DONE, error, sse
from simulator.serving import reply_length
from simulator.state import SimState
from simulator.tokens import prompt_token_ids

_request_ids = itertools.count(1)


def _plan(state: SimState, body: Any, arrival: float) -> ChatPlan:
    cfg = state.config
    fields = parse_chat_request(cfg, body)  # before any bookkeeping: a 400 books nothing
    prompt_ids = prompt_token_ids(fields.messages)
    n_tokens, finish_reason = reply_length(
        fields.max_tokens, cfg.natural_length, fields.min_tokens, fields.ignore_eos
    )
    # The cache is looked up (and filled) at arrival, in arrival order, so that the
    # cached count and with it the whole schedule are known before the first byte goes out.
    cached = state.prefix_cache.admit(prompt_ids)
    serving = state.scheduler.plan(arrival, len(prompt_ids), cached, n_tokens)
    return ChatPlan(
        request_id=f"chatcmpl-sim-{next(_request_ids)}",
        created=int(time.time()),
        model=cfg.model_id,
        profile=PROFILES[cfg.engine],
        serving=serving,
        prompt_tokens=len(prompt_ids),
        cached_tokens=cached,
        reasoning_tokens=min(cfg.reasoning_tokens, n_tokens),
        finish_reason=finish_reason,
        stream=fields.stream,
        include_usage=fields.include_usage,
    )


def _timing_headers(state: SimState, plan: ChatPlan) -> dict[str, str]:
    cfg = state.config
    return {
        "x-sim-engine": cfg.engine,
        "x-sim-ttft-ms": f"{cfg.ttft_ms:g}",
        "x-sim-tokens-per-s": f"{cfg.tokens_per_s:g}",
        "x-sim-completion-tokens": str(plan.n_tokens),
    }


def _closing_frames(state: SimState, plan: ChatPlan, lateness: list[float]) -> list[dict[str, Any]]:
    """The frames after the last token: finish reason, then usage if asked; the last carries the report."""
    frames = [reply.chunk(plan, {}, finish_reason=plan.finish_reason)]
    if plan.include_usage:
        frames.append({**reply.chunk(plan, {}), "choices": [], "usage": reply.usage(plan)})
    if plan.profile.llama_timings:
        frames[-1]["timings"] = reply.llama_timings(plan)
    frames[-1]["sim"] = reply.sim_info(state, plan, lateness)
    return frames


async def _frames(state: SimState, plan: ChatPlan) -> AsyncIterator[bytes]:
    # A client that disconnects ends this generator early; its batch slot stays booked
    # until its planned end (see serving.Scheduler), so no bookkeeping is undone here.
    state.metrics.started(plan.prompt_tokens)
    lateness: list[float] = []
    try:
        # vLLM and llama-server send the role-only frame with the first token, after queueing
        # and prefill, so a client's time to first response is about its TTFT (llama-benchy's pp
        # depends on that). --early-role-frame sends it on arrival instead: a client that took
        # it for the first token would then measure a TTFT of ~0.
        role = sse(reply.chunk(plan, {"role": "assistant", "content": plan.profile.role_content}))
        if state.config.early_role_frame or not plan.n_tokens:
            yield role
        for i in range(plan.n_tokens):
            late = await sleep_until(plan.serving.due(i))
            if i == 0 and not state.config.early_role_frame:
                yield role
            yield sse(reply.chunk(plan, reply.token_delta(plan, i)))
            lateness.append(late)  # after the send: the count doubles as "tokens sent"
        for frame in _closing_frames(state, plan, lateness):
            yield sse(frame)
        yield SSE_DONE
    finally:
        state.metrics.finished(len(lateness))


async def _whole(state: SimState, plan: ChatPlan) -> dict[str, Any]:
    state.metrics.started(plan.prompt_tokens)
    generated = 0
    try:
        late = await sleep_until(plan.serving.last_due)
        generated = plan.n_tokens
    finally:
        state.metrics.finished(generated)
    body: dict[str, Any] = {
        "id": plan.request_id,
        "object": "chat.completion",
        "created": plan.created,
        "model": plan.model,
        "choices": [{"index": 0, "message": reply.message(plan), "finish_reason": plan.finish_reason}],
        "usage": reply.usage(plan),
    }
    if plan.profile.llama_timings:
        body["timings"] = reply.llama_timings(plan)
    body["sim"] = reply.sim_info(state, plan, [late])
    return body


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
