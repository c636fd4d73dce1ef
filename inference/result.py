"""What one streamed reply produced, and the fold that builds it chunk by chunk.

A reply can come on two channels: the answer (``delta.content``) and, from reasoning models,
the model's thinking (``delta.reasoning_content`` or ``delta.reasoning``, see
``inference.deltas``), which usually streams first. Both are kept apart, each with the arrival
times of its chunks, and both count as output: the server's ``usage.completion_tokens``
includes the reasoning tokens.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from inference.deltas import delta_texts
from inference.errors import ProtocolViolation, ServerError

DONE = "[DONE]"

Channel = Literal["answer", "reasoning"]
ANSWER: Final[Channel] = "answer"
REASONING: Final[Channel] = "reasoning"


@dataclass(frozen=True, slots=True)
class Piece:
    """One piece of streamed text and the channel it came on."""

    channel: Channel
    text: str

    @property
    def is_reasoning(self) -> bool:
        return self.channel == REASONING


def _first_after(times: tuple[float, ...], origin: float) -> float | None:
    return times[0] - origin if times else None


@dataclass(frozen=True)
class ChatResult:
    """A finished (or, on errors, partial) reply with its timings.

    All times are ``time.perf_counter()`` readings in this process.
    ``started_at`` is when the call began; ``sent_at`` is when the request
    started going out on its connection, so TTFT excludes the client's own
    setup (connection pool, connecting), which on a busy machine can take
    milliseconds.

    ``text`` is the answer; ``reasoning`` is the thinking a reasoning model
    streamed (empty for other models). ``token_times`` has one entry per chunk
    that carried text on either channel: streaming servers send one token per
    chunk and ``output_tokens`` counts reasoning tokens too, so it stays the
    arrival time of every output token, which TTFT, the inter-token gaps and
    the decode rate are measured on. ``reasoning_times`` and ``answer_times``
    are the same stamps split by channel (a chunk carrying both appears in
    both). The accumulator fills all three; the defaults only spare callers
    that build a result by hand for a reply without reasoning.
    """

    text: str
    started_at: float
    sent_at: float
    token_times: tuple[float, ...]
    ended_at: float
    output_tokens: int
    tokens_from_usage: bool  # True: the server's usage.completion_tokens; False: counted chunks
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    model: str | None = None
    reasoning: str = ""
    reasoning_times: tuple[float, ...] = ()
    answer_times: tuple[float, ...] = ()
    # The simulator's own statement of intended timing; None for real servers.
    sim: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def ttft_s(self) -> float | None:
        """Request sent to the first token on any channel; role-only frames do not count."""
        return _first_after(self.token_times, self.sent_at)

    @property
    def ttf_thought_s(self) -> float | None:
        """Request sent to the first reasoning chunk; None when the model did not think aloud."""
        return _first_after(self.reasoning_times, self.sent_at)

    @property
    def ttfa_s(self) -> float | None:
        """Request sent to the first answer (content) chunk: what a reader waits for."""
        return _first_after(self.answer_times, self.sent_at)

    @property
    def e2e_s(self) -> float:
        """The whole call as the caller lived it, from ``started_at`` to the end of the stream."""
        return self.ended_at - self.started_at

    @property
    def inter_token_s(self) -> tuple[float, ...]:
        return tuple(b - a for a, b in itertools.pairwise(self.token_times))

    @property
    def tokens_per_s(self) -> float | None:
        """Decode rate: tokens after the first over the time from first to last chunk.

        TTFT (prefill) is reported separately, so it is excluded here. Reasoning
        tokens are decoded like any other, so both channels count. None when
        fewer than two chunks arrived and the rate cannot be measured.
        """
        if self.output_tokens < 2 or len(self.token_times) < 2:
            return None
        span = self.token_times[-1] - self.token_times[0]
        return (self.output_tokens - 1) / span if span > 0 else None


def error_detail(body: bytes) -> str:
    """The human part of an error body, whatever shape the server chose."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            for key in ("message", "detail", "msg"):
                if isinstance(err.get(key), str):
                    return err[key]
        if isinstance(err, str):
            return err
    return text[:300]


class StreamAccumulator:
    """Folds the data payloads of a chat stream into a ``ChatResult``."""

    def __init__(self, url: str, started_at: float) -> None:
        self.url = url
        self.started_at = started_at
        self.sent_at = started_at  # until the transport reports the request written
        self.done = False
        self.texts: dict[Channel, list[str]] = {ANSWER: [], REASONING: []}
        self.times: dict[Channel, list[float]] = {ANSWER: [], REASONING: []}
        self.token_times: list[float] = []  # chunks with text on either channel
        self.usage: Mapping[str, Any] | None = None
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.sim: Mapping[str, Any] | None = None

    def add(self, payload: str, at: float) -> list[Piece]:
        """Fold one payload received at ``at``; returns the text it carried, channel by channel."""
        if payload.strip() == DONE:
            self.done = True
            return []
        data = self._parse(payload, at)
        self.model = data.get("model") or self.model
        self.usage = data.get("usage") or self.usage
        self.sim = data.get("sim") or self.sim
        pieces = [piece for choice in data.get("choices") or [] for piece in self._choice_pieces(choice)]
        if pieces:
            self.token_times.append(at)
        for piece in pieces:
            self.texts[piece.channel].append(piece.text)
            self.times[piece.channel].append(at)
        return pieces

    def _parse(self, payload: str, at: float) -> dict[str, Any]:
        """The frame as a JSON object; an error frame or a malformed one raises."""
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise ProtocolViolation(
                f"{self.url} sent a stream frame that is not JSON: {payload[:120]!r}",
                self.url,
                self.partial(at),
            ) from exc
        if not isinstance(data, dict):
            raise ProtocolViolation(
                f"{self.url} sent an unexpected stream frame: {payload[:120]!r}", self.url
            )
        if "error" in data or data.get("object") == "error":
            detail = error_detail(payload.encode())
            message = f"{self.url} reported an error mid-stream: {detail}"
            raise ServerError(message, self.url, 200, detail, self.partial(at))
        return data

    def _choice_pieces(self, choice: Any) -> list[Piece]:
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            return []
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        delta = choice.get("delta")
        if not isinstance(delta, Mapping):
            return []
        # Role-only frames carry "content": null (llama.cpp) or "" (vLLM); both add nothing.
        answer, reasoning = delta_texts(delta)
        # Thinking precedes the answer it leads to, should one frame ever carry both.
        candidates = (Piece(REASONING, reasoning), Piece(ANSWER, answer))
        return [piece for piece in candidates if piece.text]

    @property
    def finished(self) -> bool:
        return self.done or self.finish_reason is not None

    def partial(self, ended_at: float) -> ChatResult:
        usage_tokens = (self.usage or {}).get("completion_tokens")
        from_usage = isinstance(usage_tokens, int)
        prompt_tokens = (self.usage or {}).get("prompt_tokens")
        return ChatResult(
            text="".join(self.texts[ANSWER]),
            started_at=self.started_at,
            sent_at=self.sent_at,
            token_times=tuple(self.token_times),
            ended_at=ended_at,
            # Without usage, count chunks on both channels: reasoning tokens are output too.
            output_tokens=usage_tokens if from_usage else len(self.token_times),
            tokens_from_usage=from_usage,
            prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None,
            finish_reason=self.finish_reason,
            model=self.model,
            reasoning="".join(self.texts[REASONING]),
            reasoning_times=tuple(self.times[REASONING]),
            answer_times=tuple(self.times[ANSWER]),
            sim=self.sim,
        )
