"""The fields of a chat completion request the simulator acts on, validated.

Other OpenAI fields (``seed``, ``temperature``, ``top_p``, ...) are accepted
and ignored, as a server that honours them would still time its reply the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simulator.config import SimConfig
from simulator.profiles import PROFILES


class BadRequest(Exception):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class ChatRequestFields:
    messages: list[Mapping[str, Any]]
    max_tokens: int
    min_tokens: int
    ignore_eos: bool
    stream: bool
    include_usage: bool


def _whole_number(body: Mapping[str, Any], key: str, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    # bool is an int subclass in Python; true/false is not a token count.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(400, f"{key} must be a whole number >= {minimum}, got {value!r}")
    return value


def _max_tokens(body: Mapping[str, Any], default: int) -> int:
    # The newer OpenAI name wins when a client sends both.
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = _whole_number(body, key, 1)
    return default if value is None else value


def check_model(config: SimConfig, requested: Any) -> None:
    """vLLM-based servers reject a model name they do not serve; llama-server takes any."""
    if PROFILES[config.engine].strict_model_name and requested not in (None, config.model_id):
        raise BadRequest(404, f"The model `{requested}` does not exist.", "NotFoundError")


def parse_chat_request(config: SimConfig, body: Any) -> ChatRequestFields:
    if not isinstance(body, dict):
        raise BadRequest(400, "request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest(400, "messages must be a non-empty list of objects")
    check_model(config, body.get("model"))
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise BadRequest(400, f"ignore_eos must be true or false, got {ignore_eos!r}")
    stream_options = body.get("stream_options") or {}
    return ChatRequestFields(
        messages=messages,
        max_tokens=_max_tokens(body, config.max_tokens_default),
        min_tokens=_whole_number(body, "min_tokens", 0) or 0,
        ignore_eos=ignore_eos,
        stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
    )
