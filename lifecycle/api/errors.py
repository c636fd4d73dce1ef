"""The one shape of every /api error: ``{"error": <code>, "detail": <message>, ...}``."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from lifecycle.core.events import redact_text


class ApiError(Exception):
    """An answer other than success that the API decides itself (parameters, waits, routing)."""

    def __init__(self, status_code: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.extra = extra


def error_response(
    status_code: int, error: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    # Details can quote server output (a log tail in a failure reason): strip secrets here too.
    body = {"error": error, "detail": redact_text(detail), **extra}
    return JSONResponse(body, status_code=status_code, headers=headers)
