"""OpenAI-compatible streaming chat client that timestamps every chunk (no streamlit here)."""

from inference.client import AsyncChatStream, ChatRequest, ChatStream, achat, chat, chat_url
from inference.errors import (
    InferenceError,
    ModelNotReady,
    ProtocolViolation,
    RequestTimedOut,
    ServerError,
    ServerUnreachable,
    StreamInterrupted,
)
from inference.result import ChatResult

__all__ = [
    "AsyncChatStream",
    "ChatRequest",
    "ChatResult",
    "ChatStream",
    "InferenceError",
    "ModelNotReady",
    "ProtocolViolation",
    "RequestTimedOut",
    "ServerError",
    "ServerUnreachable",
    "StreamInterrupted",
    "achat",
    "chat",
    "chat_url",
]
