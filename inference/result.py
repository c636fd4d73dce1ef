"""What one streamed reply produced, and the fold that builds it chunk by chunk."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inference.errors import ProtocolViolation, ServerError

DONE = "[DONE]"


@dataclass(frozen=True)
class ChatResult:
    """A finished (or, on errors, partial) reply with its timings.

    All times are ``time.perf_counter()`` readings in this process.
    ``started_at`` is when the call began; ``sent_at`` is when the request
    started going out on its connection, so TTFT excludes the client's own
    setup (connection pool, connecting), which on a busy machine can take
    milliseconds. ``token_times`` has one entry per chunk that carried text;
    streaming servers send one token per chunk, so it doubles as token arrival
    times.
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
    # The simulator's own statement of intended timing; None for real servers.
    sim: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def ttft_s(self) -> float | None:
        """Request sent to first text chunk received; role-only frames do not count."""
        return self.token_times[0] - self.sent_at if self.token_times else None

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

        TTFT (prefill) is reported separately, so it is excluded here. None when
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
        self.pieces: list[str] = []
        self.token_times: list[float] = []
        self.usage: Mapping[str, Any] | None = None
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.sim: Mapping[str, Any] | None = None

    def add(self, payload: str, at: float) -> str | None:
        """Fold one payload received at ``at``; returns its text, if it carried any."""
        if payload.strip() == DONE:
            self.done = True
            return None
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
        self.model = data.get("model") or self.model
        self.usage = data.get("usage") or self.usage
        self.sim = data.get("sim") or self.sim
        text = "".join(self._choice_text(choice) for choice in data.get("choices") or [])
        if not text:
            return None
        self.pieces.append(text)
        self.token_times.append(at)
        return text

    def _choice_text(self, choice: Any) -> str:
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            return ""
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        # Role-only frames carry "content": null (llama.cpp) or "" (vLLM); both add nothing.
        content = (choice.get("delta") or {}).get("content")
        return content if isinstance(content, str) else ""

    @property
    def finished(self) -> bool:
        return self.done or self.finish_reason is not None

    def partial(self, ended_at: float) -> ChatResult:
        usage_tokens = (self.usage or {}).get("completion_tokens")
        from_usage = isinstance(usage_tokens, int)
        prompt_tokens = (self.usage or {}).get("prompt_tokens")
        return ChatResult(
            text="".join(self.pieces),
            started_at=self.started_at,
            sent_at=self.sent_at,
            token_times=tuple(self.token_times),
            ended_at=ended_at,
            output_tokens=usage_tokens if from_usage else len(self.token_times),
            tokens_from_usage=from_usage,
            prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None,
            finish_reason=self.finish_reason,
            model=self.model,
            sim=self.sim,
        )
