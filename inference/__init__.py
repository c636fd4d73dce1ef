"""OpenAI-compatible streaming chat client that timestamps every chunk, answer and reasoning
channels apart (no streamlit here)."""

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
from inference.result import ANSWER, REASONING, Channel, ChatResult, Piece

__all__ = [
    "ANSWER",
    "REASONING",
    "AsyncChatStream",
    "Channel",
    "ChatRequest",
    "ChatResult",
    "ChatStream",
    "InferenceError",
    "ModelNotReady",
    "Piece",
    "ProtocolViolation",
    "RequestTimedOut",
    "ServerError",
    "ServerUnreachable",
    "StreamInterrupted",
    "achat",
    "chat",
    "chat_url",
]
