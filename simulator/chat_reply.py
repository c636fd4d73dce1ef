"""What a chat reply says, built from its plan: deltas, usage, llama.cpp timings, the ``sim`` report.

Pure functions of a ``ChatPlan`` (decided at arrival), so every figure a reply
reports is the ground truth of its schedule, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulator.profiles import EngineProfile
from simulator.serving import ServingPlan
from simulator.state import SimState
from simulator.tokens import expected_reasoning, expected_text, reasoning_text, token_text


@dataclass(frozen=True)
class ChatPlan:
    """Everything about one reply that is decided when the request arrives."""

    request_id: str
    created: int
    model: str
    profile: EngineProfile
    serving: ServingPlan
    prompt_tokens: int
    cached_tokens: int
    reasoning_tokens: int  # the first this many tokens are reasoning; never more than n_tokens
    finish_reason: str
    stream: bool
    include_usage: bool

    @property
    def n_tokens(self) -> int:
        return self.serving.n_tokens

    @property
    def answer_tokens(self) -> int:
        return self.n_tokens - self.reasoning_tokens

    @property
    def first_answer_due(self) -> float | None:
        return self.serving.due(self.reasoning_tokens) if self.answer_tokens else None


def token_delta(plan: ChatPlan, index: int) -> dict[str, str]:
    """The delta of token ``index``: reasoning first, under the dialect's field, then the answer."""
    if index < plan.reasoning_tokens:
        return {plan.profile.reasoning_field: reasoning_text(index)}
    return {"content": token_text(index - plan.reasoning_tokens)}


def chunk(plan: ChatPlan, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": plan.request_id,
        "object": "chat.completion.chunk",
        "created": plan.created,
        "model": plan.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def message(plan: ChatPlan) -> dict[str, Any]:
    """The assistant message of a whole (non-streamed) reply."""
    content = expected_text(plan.answer_tokens) if plan.answer_tokens else None
    body: dict[str, Any] = {"role": "assistant", "content": content}
    if plan.reasoning_tokens:
        body[plan.profile.reasoning_field] = expected_reasoning(plan.reasoning_tokens)
    return body


def usage(plan: ChatPlan) -> dict[str, Any]:
    n = plan.n_tokens
    body: dict[str, Any] = {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": n,  # reasoning included, as real servers count it
        "total_tokens": n + plan.prompt_tokens,
    }
    # The details appear only when they have something to say, so a plain reply's usage
    # keeps the three classic fields that every client (and every old test) expects.
    if plan.profile.usage_cached_tokens and plan.cached_tokens:
        body["prompt_tokens_details"] = {"cached_tokens": plan.cached_tokens}
    if plan.reasoning_tokens:
        body["completion_tokens_details"] = {"reasoning_tokens": plan.reasoning_tokens}
    return body


def _per_second(n: int, ms: float) -> float:
    return n / ms * 1000.0 if ms > 0 else 0.0


def llama_timings(plan: ChatPlan) -> dict[str, Any]:
    """llama-server's ``timings`` block, from the planned schedule.

    Same definitions as the real server: the prompt phase runs from the slot taking the
    request (queueing excluded) to the first token; the predicted phase from the first
    token to the last, while ``predicted_n`` counts the first token too, so
    ``predicted_per_second`` reads n / (n - 1) high, exactly as llama-server's does.
    """
    s = plan.serving
    prompt_n = plan.prompt_tokens - plan.cached_tokens
    prompt_ms = (s.first_due - s.admitted) * 1000.0
    predicted_ms = (s.last_due - s.first_due) * 1000.0
    n = plan.n_tokens
    figures = {
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_ms / prompt_n if prompt_n else 0.0,
        "prompt_per_second": _per_second(prompt_n, prompt_ms),
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / n if n else 0.0,
        "predicted_per_second": _per_second(n, predicted_ms),
    }
    # Rounded to a nanosecond's worth: the schedule's float noise is not information.
    rounded = {key: round(value, 6) for key, value in figures.items()}
    return {"cache_n": plan.cached_tokens, "prompt_n": prompt_n, "predicted_n": n, **rounded}


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 6)


def sim_info(state: SimState, plan: ChatPlan, lateness: list[float]) -> dict[str, Any]:
    """The intended timing (ground truth) plus how late the server itself sent tokens.

    ``ttft_ms`` and ``tokens_per_s`` are the configured base figures; the plan's own
    are ``queued_ms + ttft_ms + prefill_ms`` to the first token and ``token_interval_ms``
    between tokens. The lateness figures let a benchmark tell the server's own delays
    apart from delays on the way to the client.
    """
    s, cfg = plan.serving, state.config

    def epoch(mono: float | None) -> float | None:
        return None if mono is None else round(state.clock.epoch_at(mono), 6)

    return {
        "engine": cfg.engine,
        "ttft_ms": cfg.ttft_ms,
        "tokens_per_s": cfg.tokens_per_s,
        "completion_tokens": plan.n_tokens,
        "prompt_tokens": plan.prompt_tokens,
        "cached_tokens": plan.cached_tokens,
        "reasoning_tokens": plan.reasoning_tokens,
        "finish_reason": plan.finish_reason,
        "queued_ms": _ms(s.queued_s),
        "prefill_ms": _ms(s.prefill_s),
        "batch_n": s.batch_n,
        "token_interval_ms": s.interval_s * 1000.0,  # unrounded: due(i) = first + i * interval
        "arrival_t": epoch(s.arrival),
        "admitted_t": epoch(s.admitted),
        "first_token_due_t": epoch(s.first_due),
        "first_answer_due_t": epoch(plan.first_answer_due),
        "last_token_due_t": epoch(s.last_due),
        "max_late_ms": round(max(lateness, default=0.0) * 1000.0, 3),
        "mean_late_ms": round(sum(lateness) / max(len(lateness), 1) * 1000.0, 3),
    }
