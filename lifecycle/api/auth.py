"""Who may use the REST API: a bearer token on /api, and no unauthenticated exposure off loopback.

The token is compared in constant time and never logged, echoed or stored. Only the
health route answers without it, so a load balancer or a script can check liveness.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Collection
from typing import Final

from pydantic import SecretStr
from starlette._utils import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

BEARER: Final = "bearer"
# Request-state key: did this request carry the token? Unset when no token is configured.
AUTHENTICATED: Final = "authenticated"


class ExposureRefused(RuntimeError):
    """The app was asked to listen beyond this machine without an API token."""


def is_loopback(host: str) -> bool:
    """True when only this machine can reach ``host``; the wildcard and names other than
    ``localhost`` count as reachable from outside."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a host name: it may resolve to anything, so it is not loopback
        return False


def check_exposure(host: str, token: SecretStr | None) -> None:
    """Refuse to serve the API to the network without a token; anyone there could start servers."""
    if is_loopback(host) or (token is not None and token.get_secret_value()):
        return
    raise ExposureRefused(
        f"refusing to listen on {host!r} without an API token, because anyone who can reach "
        "this address could load and unload models. Set DXG_API_TOKEN to a long random value "
        "(clients send it as a bearer token in the Authorization header), or listen on 127.0.0.1."
    )


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Does an ``Authorization`` header carry ``token``? Constant time in the token's content."""
    if not authorization:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != BEARER:
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


class BearerAuthMiddleware:
    """Requires ``Authorization: Bearer <token>`` on every request below the mount it wraps.

    Mounted on /api only, so Streamlit's own routes are untouched. With no token set,
    every request passes: the app then listens on loopback only (see ``check_exposure``).
    """

    def __init__(self, app: ASGIApp, token: SecretStr | None, public_paths: Collection[str] = ()) -> None:
        self.app = app
        secret = token.get_secret_value() if token is not None else ""
        self._token = secret or None
        self._public = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._token is None:
            await self.app(scope, receive, send)
            return
        headers = dict(_decoded_headers(scope))
        authenticated = bearer_matches(headers.get("authorization"), self._token)
        if authenticated or get_route_path(scope) in self._public:
            # Public routes answer everyone, but may tell a caller with the token more.
            scope.setdefault("state", {})[AUTHENTICATED] = authenticated
            await self.app(scope, receive, send)
            return
        reason = "missing" if "authorization" not in headers else "wrong"
        # The path and the reason only: never the header, which may hold a near-miss token.
        log.warning("API request refused (%s bearer token): %s %s", reason, scope["method"], scope["path"])
        await _unauthorized(send, reason)


def _decoded_headers(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]


async def _unauthorized(send: Send, reason: str) -> None:
    body = json.dumps(
        {"error": "unauthorized", "detail": f"{reason} bearer token: send 'Authorization: Bearer <token>'"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="dxg-api"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
