"""Helpers shared by the tests: paths, free ports, condition waits, environment gates, the
simulator on a free port, logs and the processes of one app instance."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, TypeVar

import psutil
import pytest

from lifecycle.runtimes.logfile import log_path
from lifecycle.runtimes.ports import free_port, port_is_free
from lifecycle.runtimes.process import INSTANCE_ENV, MODEL_ENV
from simulator.process import SimulatorProcess

__all__ = [
    "REPO_ROOT",
    "REQUIRE_GATES",
    "free_port",
    "instance_processes",
    "kill_instance",
    "log_text",
    "pid_alive",
    "port_held",
    "required",
    "simulator",
    "skip_or_fail",
    "wait_until",
]

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
GATES_FILE: Final = Path(__file__).with_name("require_gates.txt")
# The require gates, one list for the tests and for .ci/run (which exports each as NAME=1).
REQUIRE_GATES: Final = tuple(
    line.strip() for line in GATES_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")
)

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
    if var not in REQUIRE_GATES:
        raise ValueError(f"{var} is not a require gate: add it to {GATES_FILE.name} so that CI sets it")
    return os.environ.get(var, "") not in ("", "0", "false", "no")


def skip_or_fail(var: str, reason: str) -> None:
    """Skip on a laptop without the component; fail under CI where ``var`` demands it."""
    if required(var):
        pytest.fail(f"{reason} ({var}=1 demands it)")
    pytest.skip(f"{reason} (set {var}=1 to make this a failure)")


@contextlib.contextmanager
def simulator(engine: str, model_id: str, *args: str) -> Iterator[SimulatorProcess]:
    """The project's simulator as ``engine`` on a free port, stopped after the block."""
    with SimulatorProcess(engine, model_id, free_port(), args) as sim:
        yield sim


def log_text(log_dir: Path, model_id: str) -> str:
    """What the model's log holds now ("" before it exists)."""
    path = log_path(log_dir, model_id)
    return path.read_text(errors="replace") if path.exists() else ""


def pid_alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody reaped yet (this box's init doesn't reap)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def instance_processes(
    instance: str, model_id: str | None = None, *, servers_only: bool = False
) -> list[psutil.Process]:
    """Live processes carrying one app instance's marker: the app itself and the servers its
    process runtime started (``servers_only``: just those; ``model_id``: just that model's)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            env = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if env.get(INSTANCE_ENV) != instance:
            continue
        if (servers_only or model_id is not None) and MODEL_ENV not in env:
            continue
        if model_id is not None and env.get(MODEL_ENV) != model_id:
            continue
        found.append(proc)
    return found


def kill_instance(instance: str) -> None:
    """Kill whatever a failed test left of one instance: its apps first (they would restart
    servers), then its servers."""
    for proc in sorted(instance_processes(instance), key=lambda p: MODEL_ENV in _environ(p)):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.kill()


def _environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return {}
