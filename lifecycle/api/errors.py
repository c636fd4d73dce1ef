"""The one shape of every /api error: ``{"error": <code>, "detail": <message>, ...}``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lifecycle.core.errors import LifecycleError
from lifecycle.core.events import redact_text

log = logging.getLogger(__name__)
Owner = TypeVar("Owner")


class ApiError(Exception):
    """An answer other than success that the API decides itself (parameters, waits, routing)."""

    def __init__(self, status_code: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.extra = extra


Provided = TypeVar("Provided")


def provided(provider: Callable[[], Provided], what: str) -> Provided:
    """What the app's lifespan publishes (the service, the benchmark queue), or 503 while it is
    not there: the app is starting or stopping."""
    try:
        return provider()
    except Exception as exc:
        raise ApiError(503, "not_running", f"the {what} is not running (starting or stopping)") from exc


def error_response(
    status_code: int, error: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    # Details can quote server output (a log tail in a failure reason): strip secrets here too.
    body = {"error": error, "detail": redact_text(detail), **extra}
    return JSONResponse(body, status_code=status_code, headers=headers)


def json_errors(
    handler: Callable[[Owner, Request], Awaitable[Response]],
) -> Callable[[Owner, Request], Awaitable[Response]]:
    """Turn every failure of a handler method into the JSON error shape; nothing escapes as a
    500 page. Used by every /api handler, the benchmark's included."""

    @functools.wraps(handler)
    async def endpoint(self: Owner, request: Request) -> Response:
        try:
            return await handler(self, request)
        except ApiError as exc:
            return error_response(exc.status_code, exc.error, exc.detail, **exc.extra)
        except LifecycleError as exc:
            return error_response(exc.status_code, exc.error, str(exc))
        except Exception:
            # The path only: query strings are the client's business, and the traceback stays here.
            log.exception("API %s %s failed", request.method, request.url.path)
            return error_response(500, "internal_error", "unexpected error; the app's log has the details")

    return endpoint
