"""Errors in OpenAI's shape, ``{"error": {"message", "type", "code"}}``, which every OpenAI
client library parses into its own exception with the message intact."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

# OpenAI's ``type`` values for what the gateway refuses.
INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
UNAVAILABLE = "service_unavailable"


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        kind: str = INVALID_REQUEST,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.code, "param": None}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)
