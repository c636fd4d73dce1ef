"""Hostile paths under /api get the API's JSON error, not Streamlit's plain-text 400.

Streamlit's own path-security middleware answers any request whose path holds ``..``, a NUL
byte, a backslash root or a drive letter with a bare ``400 Bad Request``, and a path with a line
break matches no route and gets Streamlit's plain-text 404. That is right for
its static files, but under /api every answer is JSON (README, "REST API"). This guard runs
before Streamlit's middleware (``st.App`` puts user middleware first) and answers such paths
under the API's prefixes itself, with the same JSON shape as every other API error. It never
passes them on, so Streamlit's check still has the last word everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send
from streamlit.path_security import is_unsafe_path_pattern

from lifecycle.api.errors import error_response


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


def unsafe(path: str) -> bool:
    """The test Streamlit applies (so nothing it would refuse reaches it), plus ``//`` and control
    characters, which no route pattern matches (a line break ends Starlette's ``.*``), so they would
    fall through to Streamlit's plain-text 404."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        return True
    return path.startswith(("//", "\\\\")) or is_unsafe_path_pattern(path.lstrip("/"))


class ApiPathGuard:
    def __init__(self, app: ASGIApp, prefixes: Sequence[str]) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path and _under(path, self.prefixes) and unsafe(path):
            detail = (
                f"no API route at {path!r}: paths holding '..', control characters or a drive or UNC "
                "root never name a model or a route"
            )
        elif path and not _under(path, self.prefixes) and _under(path.lower(), self.prefixes):
            # /API/models would otherwise get the UI page with a 200: routes are case-sensitive.
            detail = f"no API route at {path!r}: API paths are lower case ({path.lower()!r})"
        else:
            await self.app(scope, receive, send)
            return
        await error_response(404, "not_found", detail)(scope, receive, send)
