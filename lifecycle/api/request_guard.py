"""Only this machine's own pages and tools may drive the app: Host, Origin and form checks.

Without them, any web page the user visits could load models: a cross-site form or ``fetch``
posts to ``http://127.0.0.1:8080/api/...`` (CSRF), and a name that an attacker's DNS points at
127.0.0.1 reaches the app as a "same-origin" site (DNS rebinding). So, before anything else:

- the ``Host`` must be one the app answers to: a loopback name or address, the address it binds
  to, or a name in ``DXG_ALLOWED_HOSTS``; a wildcard bind (0.0.0.0, which needs a token) with no
  allowed names configured accepts any host, and says so at start;
- a state-changing /api request (anything but GET, HEAD, OPTIONS) with an ``Origin`` other than
  the app's own is refused: browsers always send ``Origin`` on cross-site POSTs, while the CLI,
  scripts and curl send none;
- such a request may not carry a content type an HTML form can send (form-urlencoded,
  multipart, text/plain): a page cannot post JSON cross-site without a preflight, which gets
  no CORS grant.

Refusals under /api are JSON like every API error; the UI's paths get plain text, and a
WebSocket from a wrong host is closed before it is accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Final
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lifecycle.api.auth import is_loopback
from lifecycle.api.errors import error_response

log = logging.getLogger(__name__)

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# What a plain HTML form (or a "simple" cross-site fetch) can send without a CORS preflight.
FORM_TYPES: Final = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
WILDCARDS: Final = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - names for a bind, not a choice
POLICY_VIOLATION: Final = 1008  # WebSocket close code


def host_name(host_header: str) -> str:
    """``127.0.0.1:8080`` -> ``127.0.0.1``; ``[::1]:8080`` -> ``::1``; lower case."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostPolicy:
    """Which Host names the app answers to."""

    def __init__(self, bind_host: str, allowed: Collection[str]) -> None:
        self.names = {name.strip().lower() for name in allowed if name.strip()}
        bind = bind_host.strip().strip("[]").lower()
        self.any_host = bind in WILDCARDS and not self.names
        if bind not in WILDCARDS:
            self.names.add(bind)

    def allows(self, host_header: str) -> bool:
        name = host_name(host_header)
        return self.any_host or is_loopback(name) or name in self.names

    def described(self) -> str:
        return ", ".join(["localhost", "127.0.0.1", "::1", *sorted(self.names)])


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def _refusal(path: str, api: bool, status: int, error: str, detail: str) -> Response:
    if api:
        return error_response(status, error, detail)
    return PlainTextResponse(f"{status} {detail}", status_code=status)


class RequestGuard:
    def __init__(
        self, app: ASGIApp, policy: HostPolicy, api_prefixes: Sequence[str], form_prefixes: Sequence[str] = ()
    ) -> None:
        self.app = app
        self.policy = policy
        self.api_prefixes = tuple(api_prefixes)
        # Routes that take a form from the app's own page (sign-in): Origin checked, forms allowed.
        self.form_prefixes = tuple(form_prefixes)

    def _api(self, path: str) -> bool:
        return _under(path, self.api_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not self.policy.allows(host):
            log.warning("refused a request for Host %r (allowed: %s)", host, self.policy.described())
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": POLICY_VIOLATION})
                return
            detail = (
                f"this app does not answer to Host {host!r} (it answers to {self.policy.described()}); "
                "if you reach it by that name, add it to DXG_ALLOWED_HOSTS"
            )
            path = scope.get("path", "")
            await _refusal(path, self._api(path), 421, "host_not_allowed", detail)(scope, receive, send)
            return
        problem = self._cross_site(scope, headers, host) if scope["type"] == "http" else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, error, detail = problem
        log.warning("refused %s %s: %s", scope.get("method"), scope.get("path"), detail)
        await error_response(status, error, detail)(scope, receive, send)

    def _cross_site(self, scope: Scope, headers: Headers, host: str) -> tuple[int, str, str] | None:
        path = scope.get("path", "")
        api = self._api(path)
        if not (api or _under(path, self.form_prefixes)) or scope.get("method", "GET") in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.netloc.lower() != host.strip().lower() or parts.scheme != scope.get("scheme", "http"):
                return (
                    403,
                    "cross_origin",
                    f"a request from {origin!r} may not change anything here: only the app's own "
                    "pages and clients without an Origin (the CLI, scripts) may",
                )
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if api and content_type in FORM_TYPES:
            return (
                415,
                "unsupported_media_type",
                f"Content-Type {content_type} is what a cross-site form sends; send no body or "
                "application/json",
            )
        return None
