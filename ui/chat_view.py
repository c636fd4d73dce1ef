"""Chat page logic without the page: conversation turns, request messages, metric captions and
error texts. A reasoning model's thinking is kept with its turn, shown, but never sent back.

Pure: no streamlit. The page keeps one ``Conversation`` per model in session state and only
lays out what these functions return.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Final, Literal

from inference import (
    ChatResult,
    InferenceError,
    ModelNotReady,
    ProtocolViolation,
    RequestTimedOut,
    ServerError,
    ServerUnreachable,
    StreamInterrupted,
)
from ui.format import duration

Role = Literal["user", "assistant"]
CONVERSATIONS_KEY: Final = "chat:conversations"


@dataclass(frozen=True)
class Turn:
    role: Role
    content: str
    caption: str | None = None  # the metrics line under a reply
    error: str | None = None  # why a reply stopped short
    reasoning: str = ""  # a reasoning model's thinking before its answer; "" for other models


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)

    def add(self, turn: Turn) -> None:
        self.turns.append(turn)

    def clear(self) -> None:
        self.turns.clear()


def conversation(state: MutableMapping[str, object], model_id: str) -> Conversation:
    """The model's conversation in ``state`` (Streamlit's session state), created on first use."""
    store = state.setdefault(CONVERSATIONS_KEY, {})
    assert isinstance(store, dict)
    return store.setdefault(model_id, Conversation())


def request_messages(system_prompt: str, turns: list[Turn], prompt: str) -> list[dict[str, str]]:
    """What goes to the server: the system prompt, the earlier turns, the new question.

    Failed replies are left out: a half answer would teach the model to stop mid-sentence, and
    an empty one is not a valid assistant message for some servers. Earlier thinking is left out
    too: reasoning models expect only the answers back (DeepSeek's API refuses a
    ``reasoning_content`` in a request message), and it would cost prompt tokens for nothing.
    """
    messages = [{"role": "system", "content": system_prompt.strip()}] if system_prompt.strip() else []
    messages += [{"role": t.role, "content": t.content} for t in turns if t.error is None and t.content]
    messages.append({"role": "user", "content": prompt})
    return messages


def metrics_caption(result: ChatResult) -> str:
    """``TTFT 0.21 s · 64 output tokens (server usage) · 41.9 tokens/s`` for one reply.

    A reply that thought aloud has two waits worth telling apart, so its TTFT (the first token on
    either channel, which is the first thought) is split into
    ``First thought 0.21 s · first answer 3.40 s · ...``, and its token count says it includes
    the thinking, which explains a count far above the answer's length.
    """
    source = "server usage" if result.tokens_from_usage else "counted chunks, no usage from the server"
    rate = f"{result.tokens_per_s:.1f} tokens/s" if result.tokens_per_s is not None else "tokens/s n/a"
    if not result.reasoning_times:
        return f"TTFT {duration(result.ttft_s)} · {result.output_tokens} output tokens ({source}) · {rate}"
    waits = f"First thought {duration(result.ttf_thought_s)} · first answer {duration(result.ttfa_s)}"
    return f"{waits} · {result.output_tokens} output tokens, thinking included ({source}) · {rate}"


def error_text(exc: InferenceError, model_name: str) -> str:
    """What went wrong, in words that say what to do next; the client's message has the details."""
    if isinstance(exc, ServerUnreachable):
        lead = f"{model_name} does not answer: is it still loaded?"
    elif isinstance(exc, RequestTimedOut):
        lead = f"{model_name} took too long to answer."
    elif isinstance(exc, StreamInterrupted):
        lead = f"The reply from {model_name} stopped before it was complete (was the model unloaded?)."
    elif isinstance(exc, ModelNotReady):
        lead = f"{model_name} is not ready yet."
    elif isinstance(exc, ServerError | ProtocolViolation):
        lead = f"{model_name} answered with an error."
    else:
        lead = f"The request to {model_name} failed."
    return f"{lead} {exc}"
