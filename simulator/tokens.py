"""The simulator's one tokenizer, and the deterministic text of its replies.

A token is a whitespace-separated word: chat usage, ``/tokenize`` and the
prefix cache all count with ``words``, so their figures always agree. Token
ids are stable hashes of the words (the same word always gets the same id,
in every process), which is all the prefix cache and ``/tokenize`` need.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

# A typical vocabulary size; ids only have to be stable, not meaningful.
VOCAB_SIZE = 32000

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

# The reasoning channel cycles through other words, so that a client which mixes the
# channels up (or drops one) shows it in the text it reports.
REASONING_WORDS = (
    "Hmm,",
    "let",
    "me",
    "think",
    "this",
    "through",
    "carefully",
    "before",
    "I",
    "answer.",
)


def _cycle_text(words: tuple[str, ...], index: int) -> str:
    word = words[index % len(words)]
    return word if index == 0 else " " + word


def token_text(index: int) -> str:
    """The text of answer token ``index`` (0-based); tokens after the first carry their leading space."""
    return _cycle_text(WORDS, index)


def expected_text(n_tokens: int) -> str:
    """The full answer of ``n_tokens`` tokens, for tests that check content."""
    return "".join(token_text(i) for i in range(n_tokens))


def reasoning_text(index: int) -> str:
    """The text of reasoning token ``index`` (0-based), like ``token_text`` for the other channel."""
    return _cycle_text(REASONING_WORDS, index)


def expected_reasoning(n_tokens: int) -> str:
    """The full reasoning of ``n_tokens`` tokens."""
    return "".join(reasoning_text(i) for i in range(n_tokens))


def words(text: str) -> list[str]:
    """The tokens of ``text``: its whitespace-separated words."""
    return text.split()


def token_id(word: str) -> int:
    """A word's token id: a stable hash, the same in every process (unlike ``hash(str)``)."""
    return zlib.crc32(word.encode()) % VOCAB_SIZE


def token_ids(text: str) -> list[int]:
    return [token_id(w) for w in words(text)]


def _content_text(content: Any) -> str:
    # OpenAI content is a string or a list of parts like {"type": "text", "text": ...}.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def prompt_text(messages: Iterable[Mapping[str, Any]]) -> str:
    """The text of a chat prompt as the tokenizer sees it: every message's content, in order.

    No chat template and no role tokens: the counts stay simple to predict by hand.
    """
    return " ".join(_content_text(m.get("content")) for m in messages)


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Whitespace-separated words across all message contents: simple and deterministic."""
    return len(words(prompt_text(messages)))


def prompt_token_ids(messages: Iterable[Mapping[str, Any]]) -> list[int]:
    return token_ids(prompt_text(messages))
