"""Helpers shared by the tests: free ports, condition waits, environment gates."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    probe: Callable[[], T | None],
    timeout_s: float,
    interval_s: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail with ``what`` after ``timeout_s``.

    Tests wait on conditions, never on fixed sleeps: the short poll interval
    only bounds how late we notice, not how long we wait.
    """
    deadline = time.monotonic() + timeout_s
    last_exc: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # the thing we wait for may not be up yet
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{detail}")
        time.sleep(interval_s)


def required(var: str) -> bool:
    return os.environ.get(var, "") not in ("", "0", "false", "no")


def skip_or_fail(var: str, reason: str) -> None:
    """Skip on a laptop without the component; fail under CI where ``var`` demands it."""
    if required(var):
        pytest.fail(f"{reason} ({var}=1 demands it)")
    pytest.skip(f"{reason} (set {var}=1 to make this a failure)")
