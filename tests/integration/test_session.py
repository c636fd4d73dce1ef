"""Signing a browser in with the token: the form, the cookie and its flags, slowed-down guessing,
sign-out, and a cross-site form refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from lifecycle.api.session import COOKIE, SESSION_TTL_S, make_cookie, session_valid
from tests.app_harness import api_settings, serve
from tests.catalogs import sim_process, write_catalog
from tests.support import free_port

TOKEN = "session-test-token-" + "y" * 16


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    catalog = write_catalog(tmp_path / "models.yaml", sim_process("sim-a", free_port()))
    with serve(api_settings(tmp_path, catalog, api_token=SecretStr(TOKEN))) as test_client:
        yield test_client


def test_the_right_token_gets_a_strict_http_only_expiring_cookie(client: TestClient) -> None:
    form = client.get("/auth/login")
    assert form.status_code == 200
    assert 'type="password"' in form.text
    signed = client.post("/auth/login", data={"token": TOKEN}, follow_redirects=False)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/"
    cookie = signed.headers["set-cookie"]
    for flag in ("HttpOnly", "SameSite=strict", f"Max-Age={SESSION_TTL_S}", "Path=/"):
        assert flag in cookie, cookie
    value = cookie.split(";", 1)[0].removeprefix(f"{COOKIE}=")
    assert TOKEN not in value  # the cookie proves the token, it never holds it
    assert session_valid(SecretStr(TOKEN), {COOKIE: value})
    out = client.get("/auth/logout", follow_redirects=False)
    assert out.status_code == 303
    assert "Max-Age=0" in out.headers["set-cookie"] or "expires=" in out.headers["set-cookie"].lower()


def test_cookies_are_checked_for_signature_expiry_and_token() -> None:
    token = SecretStr(TOKEN)
    good = make_cookie(TOKEN)
    assert session_valid(token, {COOKIE: good})
    assert not session_valid(token, {})
    assert not session_valid(token, {COOKIE: good[:-1] + ("0" if good[-1] != "0" else "1")})
    assert not session_valid(token, {COOKIE: make_cookie(TOKEN, now=time.time() - SESSION_TTL_S - 1)})
    assert not session_valid(SecretStr("another-token-entirely"), {COOKIE: good})
    assert not session_valid(token, {COOKIE: "9999999999.forged"})
    assert session_valid(None, {})  # no token set: the UI is open, as the API is


def test_wrong_tokens_are_refused_and_slowed_down(client: TestClient) -> None:
    took = []
    for _ in range(5):
        started = time.monotonic()
        refused = client.post("/auth/login", data={"token": "guess"}, follow_redirects=False)
        took.append(time.monotonic() - started)
        assert refused.status_code == 401
        assert "That is not the token." in refused.text
        assert "set-cookie" not in refused.headers
    # Two answered at once, then 0.5, 1 and 2 s: guessing gets slower with every try.
    assert took[2] >= 0.5
    assert took[3] >= 1.0
    assert took[4] >= 2.0
    assert client.post("/auth/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303


def test_a_cross_site_form_cannot_sign_a_browser_in(client: TestClient) -> None:
    forged = client.post(
        "/auth/login",
        data={"token": TOKEN},
        headers={"Origin": "http://evil.example"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert "set-cookie" not in forged.headers
