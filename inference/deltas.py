"""Which channel a streamed delta's text belongs to: the answer, or the model's reasoning.

Reasoning models stream their thinking before the answer. Servers name that
field differently: ``reasoning_content`` (llama.cpp, DeepSeek, older vLLM, NIM)
or ``reasoning`` (newer vLLM). Reading only ``content`` would leave a reasoning
model silent for its whole think phase and put its TTFT at the first answer word.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

REASONING_FIELDS: Final = ("reasoning_content", "reasoning")


def delta_texts(delta: Mapping[str, Any]) -> tuple[str, str]:
    """(answer text, reasoning text) of one ``choices[0].delta``; either may be empty."""
    content = delta.get("content")
    answer = content if isinstance(content, str) else ""
    reasoning = ""
    for name in REASONING_FIELDS:
        value = delta.get(name)
        if isinstance(value, str) and value:
            reasoning = value
            break
    return answer, reasoning
