"""Deterministic reply text, token counts and the absolute token schedule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# One word per token; a fixed cycle makes every reply predictable in tests.
WORDS = (
    "Simulated",
    "tokens",
    "arrive",
    "on",
    "a",
    "fixed",
    "schedule",
    "so",
    "every",
    "measurement",
    "has",
    "ground",
    "truth.",
)


def token_text(index: int) -> str:
    """The text of token ``index`` (0-based); tokens after the first carry their leading space."""
    word = WORDS[index % len(WORDS)]
    return word if index == 0 else " " + word


def expected_text(n_tokens: int) -> str:
    """The full reply of ``n_tokens`` tokens, for tests that check content."""
    return "".join(token_text(i) for i in range(n_tokens))


def _content_text(content: Any) -> str:
    # OpenAI content is a string or a list of parts like {"type": "text", "text": ...}.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Whitespace-separated words across all message contents: simple and deterministic."""
    return sum(len(_content_text(m.get("content")).split()) for m in messages)


@dataclass(frozen=True)
class TokenSchedule:
    """When each token is due, on absolute deadlines from the request's arrival.

    Token ``i`` is due at ``arrival + ttft + i / rate``. Computing every
    deadline from the arrival (instead of sleeping 1/rate after each send)
    means lateness in one send never accumulates into drift.
    """

    arrival: float
    ttft_s: float
    tokens_per_s: float
    n_tokens: int

    def due(self, index: int) -> float:
        return self.arrival + self.ttft_s + index / self.tokens_per_s

    @property
    def last_due(self) -> float:
        return self.due(max(self.n_tokens - 1, 0))
