"""Helpers shared by the tests: free ports, condition waits, environment gates."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from lifecycle.runtimes.ports import free_port, port_is_free

__all__ = ["free_port", "port_held", "required", "skip_or_fail", "wait_until"]

T = TypeVar("T")


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


@contextlib.contextmanager
def port_held(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Another process listening on 127.0.0.1:``port`` for the duration of the block."""
    code = (
        f"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_until(lambda: not port_is_free(port), timeout_s=10, what="the holder to listen")
        yield holder
    finally:
        holder.kill()
        holder.wait()


def required(var: str) -> bool:
    return os.environ.get(var, "") not in ("", "0", "false", "no")


def skip_or_fail(var: str, reason: str) -> None:
    """Skip on a laptop without the component; fail under CI where ``var`` demands it."""
    if required(var):
        pytest.fail(f"{reason} ({var}=1 demands it)")
    pytest.skip(f"{reason} (set {var}=1 to make this a failure)")
