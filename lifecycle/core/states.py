"""Lifecycle phases of a model server, the transitions between them, and the status words.

Pure: no I/O, no framework imports. The phase is what we last *observed* of the
server; what the user *asked for* is the separate ``desired`` value. The status
label combines both, because "Unloading…" is a running server that is no longer
wanted, and "Loading…" is a wanted server that is not ready yet.

Phases
------
``stopped``   no server of ours runs for the model (the start state).
``starting``  a server was started or adopted and its ready probe has not passed yet.
``ready``     the server answers its ready probe.
``stopping``  we asked the server to stop (SIGTERM / docker stop) and wait for it to go.
``crashed``   the server exited on its own or failed to start; the reconciler is about to
              choose between a restart (``backoff``) and giving up (``failed``).
``backoff``   a restart is scheduled after a delay; nothing runs meanwhile.
``failed``    the reconciler gave up; nothing runs and nothing is retried until the user
              asks for a load again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

Desired = Literal["loaded", "unloaded"]
LOADED: Final[Desired] = "loaded"
UNLOADED: Final[Desired] = "unloaded"


class Phase(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    CRASHED = "crashed"
    BACKOFF = "backoff"
    FAILED = "failed"


# The transitions a well-behaved reconciler produces. The store refuses an append that
# breaks this table (``projection.advance``); reads and rebuilds follow recorded facts as
# they are, since history is never rewritten.
TRANSITIONS: Final[dict[Phase, frozenset[Phase]]] = {
    # READY: adopting a live server; CRASHED: a start that failed before any server ran
    # (port in use, image missing), which counts towards the restart policy like a crash.
    # STOPPING from every phase: adoption stops a leftover server it finds (a hard kill, a
    # recreated database) whatever the projection last said about the model.
    Phase.STOPPED: frozenset({Phase.STARTING, Phase.READY, Phase.CRASHED, Phase.STOPPING}),
    Phase.STARTING: frozenset({Phase.READY, Phase.STOPPING, Phase.CRASHED, Phase.STOPPED}),
    Phase.READY: frozenset({Phase.STOPPING, Phase.CRASHED, Phase.STOPPED}),
    Phase.STOPPING: frozenset({Phase.STOPPED, Phase.CRASHED}),
    Phase.CRASHED: frozenset({Phase.BACKOFF, Phase.FAILED, Phase.STARTING, Phase.STOPPED, Phase.STOPPING}),
    Phase.BACKOFF: frozenset({Phase.STARTING, Phase.FAILED, Phase.STOPPED, Phase.CRASHED, Phase.STOPPING}),
    # Only a new load request leaves failed (or the stop of a leftover adoption finds).
    Phase.FAILED: frozenset({Phase.STOPPED, Phase.STOPPING}),
}

# Phases in which a server process/container of ours may exist.
RUNNING: Final[frozenset[Phase]] = frozenset({Phase.STARTING, Phase.READY, Phase.STOPPING})


class IllegalTransition(ValueError):
    """A move the lifecycle does not allow."""


def is_allowed(current: Phase, target: Phase) -> bool:
    """Staying in a phase is always allowed; moving needs an entry in ``TRANSITIONS``."""
    return current == target or target in TRANSITIONS[current]


def check_transition(current: Phase, target: Phase) -> None:
    if not is_allowed(current, target):
        allowed = ", ".join(sorted(p.value for p in TRANSITIONS[current]))
        raise IllegalTransition(f"cannot go from {current.value} to {target.value} (allowed: {allowed})")


class Dot(StrEnum):
    """Colour of the status dot; the values are Streamlit's markdown colour names."""

    GREEN = "green"
    AMBER = "orange"
    RED = "red"


@dataclass(frozen=True)
class Status:
    dot: Dot
    label: str


READY_LABEL: Final = "Loaded & Ready"
AVAILABLE_LABEL: Final = "Available (Not Loaded)"
OFFLINE_LABEL: Final = "Offline"
UNKNOWN_LABEL: Final = "Unknown (the event store can't be written)"
NOT_ANSWERING_LABEL: Final = "Loaded, not answering"
LOADING_LABEL: Final = "Loading…"
UNLOADING_LABEL: Final = "Unloading…"
RESTARTING_LABEL: Final = "Restarting…"
CRASHED_LABEL: Final = "Crashed"
FAILED_LABEL: Final = "Failed"


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for elapsed-time labels."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _with_reason(label: str, reason: str | None) -> str:
    return f"{label}: {reason}" if reason else label


def _loading(elapsed_s: float | None, usual_s: float | None) -> str:
    label = LOADING_LABEL
    if elapsed_s is not None:
        label += f" {clock(elapsed_s)}"
    if usual_s is not None:
        label += f" (usually {clock(usual_s)})"
    return label


def status(
    phase: Phase,
    desired: Desired,
    *,
    available: bool = True,
    unavailable_reason: str | None = None,
    last_error: str | None = None,
    elapsed_s: float | None = None,
    usual_s: float | None = None,
) -> Status:
    """The dot and words shown for a model in the UI and the API.

    ``available``/``unavailable_reason`` come from the runtime (files present, image
    present, engine reachable); ``elapsed_s``/``usual_s`` feed "Loading… 0:42 (usually 1:10)".
    """
    wanted = desired == LOADED
    if phase == Phase.READY:
        return Status(Dot.GREEN, READY_LABEL) if wanted else Status(Dot.AMBER, UNLOADING_LABEL)
    if phase == Phase.STOPPING or (phase == Phase.STARTING and not wanted):
        return Status(Dot.AMBER, UNLOADING_LABEL)
    if phase == Phase.STARTING:
        return Status(Dot.AMBER, _loading(elapsed_s, usual_s))
    if phase == Phase.FAILED:
        return Status(Dot.RED, _with_reason(FAILED_LABEL, last_error))
    if phase == Phase.BACKOFF and wanted:
        return Status(Dot.AMBER, f"{RESTARTING_LABEL} ({last_error})" if last_error else RESTARTING_LABEL)
    if phase == Phase.CRASHED and wanted:
        return Status(Dot.AMBER, _with_reason(CRASHED_LABEL, last_error))
    # Nothing of ours runs: whether it could be started decides the words.
    if not available:
        return Status(Dot.RED, _with_reason(OFFLINE_LABEL, unavailable_reason))
    if wanted:
        return Status(Dot.AMBER, _loading(None, usual_s))  # queued for the reconciler
    return Status(Dot.RED, AVAILABLE_LABEL)
