"""The per-model state derived from a model's events: a pure left fold.

The event store keeps one ``model_state`` row per model, updated with ``apply``
in the same transaction as each append, so reads never replay history. This
module is the single definition of that derivation; ``fold`` over a stream must
always equal the stored row (tests prove it, ``rebuild_projection`` restores it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Final, TypedDict

from lifecycle.core.events import (
    Adopted,
    Crashed,
    Event,
    GaveUp,
    LoadRequested,
    ReadyObserved,
    RecordedEvent,
    RestartScheduled,
    StartFailed,
    StartIssued,
    StopIssued,
    Stopped,
    Unhealthy,
    UnloadRequested,
    model_id_of,
)
from lifecycle.core.states import LOADED, UNLOADED, Desired, Phase, check_transition

_ERROR_LINE_MAX: Final = 200


@dataclass(frozen=True)
class ModelState:
    """What we know of one model.

    ``since`` is when the current phase began (epoch seconds, None before any event);
    ``restarts`` counts scheduled restarts since the user's last fresh load;
    ``last_error`` is the latest failure, cleared when the server becomes ready;
    ``version`` is the version of the last event folded in (the stream's version).
    """

    model_id: str
    desired: Desired = UNLOADED
    phase: Phase = Phase.STOPPED
    since: float | None = None
    handle: dict[str, Any] | None = None
    restarts: int = 0
    last_error: str | None = None
    version: int = 0


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:_ERROR_LINE_MAX] if lines else ""


def _exit_text(exit_code: int | None, oom: bool = False) -> str:
    text = "exited" if exit_code is None else f"exited with code {exit_code}"
    return text + " (out of memory)" if oom else text


def _join(*parts: str) -> str:
    return ": ".join(p for p in parts if p)


class _Changes(TypedDict, total=False):
    desired: Desired
    phase: Phase
    handle: dict[str, Any] | None
    restarts: int
    last_error: str | None


def _changes(state: ModelState, event: Event) -> _Changes:
    """What an event changes, bookkeeping (version, since) aside.

    Returned as changes rather than a new state so ``apply`` builds one object per
    event: rebuilding a million-event projection is dominated by object creation.
    """
    match event:
        case LoadRequested():
            fresh = state.desired == UNLOADED or state.phase == Phase.FAILED
            phase = Phase.STOPPED if state.phase == Phase.FAILED else state.phase
            return {"desired": LOADED, "phase": phase, "restarts": 0 if fresh else state.restarts}
        case UnloadRequested():
            # Nothing runs in these phases, so there is nothing left to stop.
            idle = state.phase in (Phase.CRASHED, Phase.BACKOFF, Phase.FAILED)
            return {"desired": UNLOADED, "phase": Phase.STOPPED if idle else state.phase}
        case StartIssued(handle=handle):
            return {"phase": Phase.STARTING, "handle": handle}
        case ReadyObserved():
            return {"phase": Phase.READY, "last_error": None}
        case StartFailed(reason=reason, exit_code=code, log_tail=tail):
            error = _join(reason, "" if code is None else _exit_text(code), _last_line(tail))
            return {"phase": Phase.CRASHED, "handle": None, "last_error": error}
        case Crashed(exit_code=code, oom=oom, log_tail=tail):
            error = _join(_exit_text(code, oom), _last_line(tail))
            return {"phase": Phase.CRASHED, "handle": None, "last_error": error}
        case Unhealthy(reason=reason, failures=failures):
            error = f"not answering: {reason} ({failures} checks in a row)"
            return {"phase": Phase.CRASHED, "handle": None, "last_error": error}
        case RestartScheduled():
            return {"phase": Phase.BACKOFF, "handle": None, "restarts": state.restarts + 1}
        case GaveUp(reason=reason, crashes=crashes):
            why = reason or f"gave up after {crashes} crashes"
            error = f"{why}; last: {state.last_error}" if state.last_error else why
            return {"phase": Phase.FAILED, "handle": None, "last_error": error}
        case StopIssued():
            return {"phase": Phase.STOPPING}
        case Stopped():
            return {"phase": Phase.STOPPED, "handle": None}
        case Adopted(handle=handle, ready=ready):
            return {"phase": Phase.READY if ready else Phase.STARTING, "handle": handle}
        case _:
            return {}  # app events and unknown types carry no model state


def apply(state: ModelState | None, recorded: RecordedEvent) -> ModelState:
    """Fold one recorded event of a ``model:<id>`` stream into the model's state."""
    model_id = model_id_of(recorded.stream)
    if model_id is None or (state is not None and state.model_id != model_id):
        owner = "no model" if state is None else f"model {state.model_id!r}"
        raise ValueError(f"event of stream {recorded.stream!r} cannot be folded into {owner}")
    if state is None:
        state = ModelState(model_id=model_id)
    changes = _changes(state, recorded.event)
    phase = changes.get("phase", state.phase)
    since = recorded.ts if phase != state.phase or state.since is None else state.since
    return replace(state, **changes, since=since, version=recorded.version)


def fold(events: Iterable[RecordedEvent], state: ModelState | None = None) -> ModelState | None:
    """The state after ``events`` (one stream, in version order); None when there are none."""
    for recorded in events:
        state = apply(state, recorded)
    return state


def advance(state: ModelState | None, events: Iterable[RecordedEvent]) -> ModelState | None:
    """``fold`` for new writes: every phase change must be one ``TRANSITIONS`` allows.

    The store calls this when it appends, so a move the lifecycle does not allow (a bug in
    whoever decided it) is refused with ``IllegalTransition`` and never recorded. Reading and
    rebuilding use ``fold``, which follows recorded facts as they are: history is not rewritten.
    """
    for recorded in events:
        after = apply(state, recorded)
        check_transition(state.phase if state is not None else Phase.STOPPED, after.phase)
        state = after
    return state
