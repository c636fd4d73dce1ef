"""Prompts of a requested token length, cut from natural text, never repeated.

Natural text rather than random words: speculative decoding and real
tokenizers behave differently on word salad. Every prompt opens with a short
random tag, so no two requests share a prefix and the server's prefix cache
cannot fake prompt-processing speed (unless a workload asks for the cache).

Token counts come from the server, never from a local tokenizer (nothing may
be downloaded): a calibration maps words to the server's own token counts.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from benchmark import fit

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
MAX_LENGTH = 1_000_000  # a wide sd must not draw a length no server takes
Messages = list[dict[str, Any]]


class PromptFileError(ValueError):
    """A prompt file that cannot be used, with the line that is wrong."""


@cache
def corpus_words() -> tuple[str, ...]:
    words: list[str] = []
    for path in sorted(CORPUS_DIR.glob("*.txt")):
        words.extend(path.read_text(encoding="utf-8").split())
    if not words:
        raise RuntimeError(f"no text under {CORPUS_DIR}: the benchmark's prompt corpus is missing")
    return tuple(words)


@dataclass(frozen=True)
class Calibration:
    """Server tokens ~= per_word * words + overhead, fitted from the server's own usage counts.

    ``overhead`` is the chat template's share (role markers, a default system
    prompt), which every request pays once.
    """

    per_word: float = 1.3
    overhead: float = 0.0

    def words_for(self, tokens: int) -> int:
        return max(1, round((tokens - self.overhead) / self.per_word))

    def content_words_for(self, tokens: int) -> int:
        """Words for text that is part of a larger prompt (no template overhead of its own)."""
        return max(1, round(tokens / self.per_word))

    @classmethod
    def fit(cls, samples: list[tuple[int, int]]) -> Calibration:
        """From (words, server prompt tokens) pairs: a least-squares line, or the default when
        the samples cannot define one."""
        fitted = fit.line(samples)
        if fitted is None or fitted[0] <= 0:
            return cls()
        slope, intercept = fitted
        return cls(per_word=slope, overhead=max(0.0, intercept))


class PromptFactory:
    """Seeded: the same seed gives the same prompts, so a run can be repeated exactly."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - reproducible prompts, not secrets
        # Tags come from fresh entropy, not the seed: two runs with the same seed must still
        # send prompts the server has never seen, or its prefix cache would fake pp.
        self._tags = random.Random(os.urandom(16))  # noqa: S311 - uniqueness, not secrecy
        self._words = corpus_words()

    def tag(self) -> str:
        # Eight hex digits: tokenizes to a few tokens and never repeats within a run.
        return f"[{self._tags.getrandbits(32):08x}]"

    def text(self, n_words: int) -> str:
        """``n_words`` consecutive words from a random place in the corpus, wrapping around."""
        words = self._words
        start = self._rng.randrange(len(words))
        picked = [words[(start + i) % len(words)] for i in range(n_words)]
        return " ".join(picked)

    def unique_text(self, n_words: int) -> str:
        """Text whose first words no other prompt shares (the tag counts as one of the words)."""
        return f"{self.tag()} {self.text(max(0, n_words - 1))}".rstrip()

    def length(self, mean: int, sd: float) -> int:
        return min(MAX_LENGTH, max(1, round(self._rng.gauss(mean, sd)))) if sd else mean

    def gaps(self, rate: float, n: int, poisson: bool) -> list[float]:
        """Seconds between successive intended sends: exponential for Poisson arrivals."""
        if poisson:
            return [self._rng.expovariate(rate) for _ in range(n)]
        return [1.0 / rate] * n

    def pick(self, items: list[Messages]) -> Messages:
        return items[self._rng.randrange(len(items))]


def user_messages(text: str) -> Messages:
    return [{"role": "user", "content": text}]


def _messages_of(value: Any) -> Messages | None:
    if isinstance(value, Mapping):
        value = value.get("messages")
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(m, Mapping) and isinstance(m.get("role"), str) and "content" in m for m in value):
        return None
    return [dict(m) for m in value]


def load_prompt_file(path: Path) -> list[Messages]:
    """One conversation per line: ``{"messages": [...]}`` or a bare messages list."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: files saved with a BOM
    except OSError as exc:
        raise PromptFileError(f"cannot read prompt file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PromptFileError(f"prompt file {path} is not UTF-8 text") from None
    conversations: list[Messages] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise PromptFileError(
                f"{path}:{number}: not JSON ({exc.msg}); each line must be one JSON object"
            ) from None
        messages = _messages_of(value)
        if messages is None:
            raise PromptFileError(
                f'{path}:{number}: expected {{"messages": [{{"role": ..., "content": ...}}, ...]}} '
                "or a list of such messages"
            )
        conversations.append(messages)
    if not conversations:
        raise PromptFileError(f"prompt file {path} holds no conversations")
    return conversations
