"""Finding and ending every process a server left behind, not only the one we started.

A server may fork workers, and a worker may ignore SIGTERM or leave the process group
with setsid. Three nets catch them: the process group, the descendants of the leader
(walked while the tree is still intact) and the launch marker in the environment, which
every descendant inherits.

"Gone" means not running: a dead child of a parent that never reaps stays a zombie (this
container's init does not reap orphans), but it holds no memory, port or GPU.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable

import psutil

POLL_S = 0.02


def is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        # AccessDenied only happens for processes that aren't ours to manage anyway.
        return False


def process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def environ_of(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return {}


def collect(
    roots: Iterable[psutil.Process], pgid: int | None, marker: tuple[str, str] | None
) -> dict[int, psutil.Process]:
    """Live processes of the server: ``roots``, their descendants, the group and marker holders.

    Pass ``pgid`` only while the group is known to be the server's (see ``holds_group``).
    """
    me = os.getpid()
    found: dict[int, psutil.Process] = {}

    def add(proc: psutil.Process) -> None:
        if proc.pid != me and is_alive(proc):
            found.setdefault(proc.pid, proc)

    for root in roots:
        add(root)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            for child in root.children(recursive=True):
                add(child)
    if pgid is None and marker is None:
        return found
    for proc in psutil.process_iter():
        if proc.pid in found:
            continue
        in_group = pgid is not None and process_group(proc.pid) == pgid
        if in_group or (marker is not None and environ_of(proc).get(marker[0]) == marker[1]):
            add(proc)
    return found


def holds_group(procs: Iterable[psutil.Process], pgid: int) -> bool:
    """Does a known live process still hold ``pgid``? Then the id can't have been reused."""
    return any(is_alive(proc) and process_group(proc.pid) == pgid for proc in procs)


def signal_all(procs: Iterable[psutil.Process], pgid: int, sig: signal.Signals) -> None:
    """Signal the group and each process; psutil refuses a pid that now names another process."""
    procs = list(procs)
    grouped = False
    # killpg only while a known member still holds the group id, so a reused id is never hit.
    if holds_group(procs, pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
            grouped = True
    for proc in procs:
        # A second SIGTERM means "terminate immediately" to llama-server and others (like a
        # second Ctrl+C), so members the group signal already reached are not signalled again.
        if grouped and _pgid_of(proc) == pgid:
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(sig)


def _pgid_of(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except ProcessLookupError:
        return None


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; the last answer is returned."""
    deadline = time.monotonic() + max(0.0, timeout_s)
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return condition()
        time.sleep(min(POLL_S, remaining))
    return True


def all_gone(procs: Iterable[psutil.Process]) -> bool:
    return not any(is_alive(proc) for proc in procs)
