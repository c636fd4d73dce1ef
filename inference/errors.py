"""Typed failures of a chat request, each with a message a user can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.result import ChatResult


class InferenceError(Exception):
    """Base class. ``partial`` holds what arrived before the failure, if anything did."""

    def __init__(self, message: str, url: str, partial: ChatResult | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.partial = partial


class ServerUnreachable(InferenceError):
    """No connection could be made: refused, unknown host, network down."""


class RequestTimedOut(InferenceError):
    """The server took longer than the configured timeout to connect or to send the next bytes."""


class StreamInterrupted(InferenceError):
    """The connection closed before the reply was complete (for example the server crashed)."""


class ProtocolViolation(InferenceError):
    """The server answered something that is not an OpenAI-compatible chat stream."""


class ServerError(InferenceError):
    """The server answered with an HTTP error status."""

    def __init__(
        self, message: str, url: str, status: int, detail: str, partial: ChatResult | None = None
    ) -> None:
        super().__init__(message, url, partial)
        self.status = status
        self.detail = detail


class ModelNotReady(ServerError):
    """HTTP 503: the server is up but its model is still loading (or unavailable)."""
