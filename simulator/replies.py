"""Small response builders shared by all routes."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse


def error(status: int, message: str, kind: str) -> JSONResponse:
    """An OpenAI-style error body; llama-server's "Loading model" 503 has exactly this shape."""
    return JSONResponse({"error": {"code": status, "message": message, "type": kind}}, status_code=status)


def sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event frame."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
