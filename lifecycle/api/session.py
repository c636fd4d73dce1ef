"""Browser sessions when a token is set: the UI asks for the token once, then a signed cookie.

Streamlit can read a request's cookies but not set them, so two small routes do that:
``GET /auth/login`` serves a one-field form, ``POST /auth/login`` checks the token (constant
time) and sets the session cookie, ``/auth/logout`` clears it. The cookie holds only an
expiry and an HMAC of it keyed by the token itself: no server-side state, sessions survive an
app restart, and changing DXG_API_TOKEN ends every session. It is HttpOnly (no script reads it),
SameSite=Strict (no other site's page sends it) and expires after ``SESSION_TTL_S``.

Wrong tokens are slowed down per client address: from the third failure in a row each answer
waits twice as long as the one before, up to ``MAX_DELAY_S``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import logging
import threading
import time
from collections.abc import Mapping
from typing import Final

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

log = logging.getLogger(__name__)

COOKIE: Final = "dxg_session"
SESSION_TTL_S: Final = 12 * 3600
AUTH_PREFIX: Final = "/auth"
LOGIN_PATH: Final = f"{AUTH_PREFIX}/login"
LOGOUT_PATH: Final = f"{AUTH_PREFIX}/logout"
FREE_FAILURES: Final = 2  # wrong tokens answered at once before the slow-down starts
MAX_DELAY_S: Final = 8.0
_CONTEXT: Final = b"dxg-session-v1"


def _key(token: str) -> bytes:
    return hmac.new(token.encode(), _CONTEXT, hashlib.sha256).digest()


def make_cookie(token: str, now: float | None = None, ttl_s: float = SESSION_TTL_S) -> str:
    expires = int((time.time() if now is None else now) + ttl_s)
    signature = hmac.new(_key(token), str(expires).encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{signature}"


def session_valid(token: SecretStr | None, cookies: Mapping[str, str], now: float | None = None) -> bool:
    """True when no token is set, or the cookie is one we signed with it and not expired."""
    secret = token.get_secret_value() if token is not None else ""
    if not secret:
        return True
    value = cookies.get(COOKIE, "")
    expires, _, signature = value.partition(".")
    if not expires.isdigit():
        return False
    wanted = hmac.new(_key(secret), expires.encode(), hashlib.sha256).hexdigest()
    fresh = int(expires) > (time.time() if now is None else now)
    return hmac.compare_digest(signature.encode(), wanted.encode()) and fresh


class FailureBrake:
    """Wrong tokens in a row per client address, and how long the next answer waits."""

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def failed(self, client: str) -> float:
        with self._lock:
            count = self._failures[client] = self._failures.get(client, 0) + 1
        return 0.0 if count <= FREE_FAILURES else min(MAX_DELAY_S, 0.5 * 2 ** (count - FREE_FAILURES - 1))

    def passed(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


_FORM: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DxGChatBenchMark: sign in</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}
input,button{{font-size:1rem;padding:.4rem;width:100%;margin:.3rem 0}}.e{{color:#b00}}</style></head>
<body><h1>DxGChatBenchMark</h1>
<p>This app is protected by a token (DXG_API_TOKEN). Enter it once; this browser stays signed in
for {hours} hours.</p>{message}
<form method="post" action="{action}">
<input type="password" name="token" autocomplete="current-password" autofocus aria-label="Token">
<button type="submit">Sign in</button></form></body></html>"""


def login_page(message: str = "", status_code: int = 200) -> HTMLResponse:
    shown = f'<p class="e" role="alert">{html.escape(message)}</p>' if message else ""
    body = _FORM.format(hours=SESSION_TTL_S // 3600, message=shown, action=LOGIN_PATH)
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


def routes(token: SecretStr | None) -> list[BaseRoute]:
    """The sign-in and sign-out routes; with no token set there is nothing to sign in to."""
    secret = token.get_secret_value() if token is not None else ""
    if not secret:
        return []
    brake = FailureBrake()

    async def show_form(request: Request) -> Response:
        return login_page()

    async def sign_in(request: Request) -> Response:
        client = request.client.host if request.client is not None else "?"
        form = await request.form()
        given = str(form.get("token", ""))
        if not hmac.compare_digest(given.encode(), secret.encode()):
            delay = brake.failed(client)
            log.warning("sign-in refused: wrong token from %s (next answers slowed by %.1fs)", client, delay)
            await asyncio.sleep(delay)
            return login_page("That is not the token.", status_code=401)
        brake.passed(client)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            make_cookie(secret),
            max_age=SESSION_TTL_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def sign_out(request: Request) -> Response:
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [
        Route(LOGIN_PATH, show_form, methods=["GET"]),
        Route(LOGIN_PATH, sign_in, methods=["POST"]),
        # GET too, so the UI's plain link can sign out; the worst a forged one can do is that.
        Route(LOGOUT_PATH, sign_out, methods=["GET", "POST"]),
    ]
