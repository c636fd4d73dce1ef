"""What the model dialog shows and offers for one model status: the decisions, without widgets.

Pure: ``ModelStatus`` in, a ``DialogView`` out. The rules, from the reference note and DESIGN.md:
external models show how they are started by hand and offer no buttons; a loadable model offers
🚀 Load Model or ⏹️ Unload Model; a failed one shows why and offers Retry; Offline always says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from lifecycle.core.admission import MemoryView, gb
from lifecycle.core.planner import span
from lifecycle.core.states import LOADED, LOADING_LABEL, OFFLINE_LABEL, RUNNING, Phase
from lifecycle.core.status_view import ModelStatus
from ui.format import clock

LOAD_LABEL: Final = "🚀 Load Model"
UNLOAD_LABEL: Final = "⏹️ Unload Model"
RETRY_LABEL: Final = "Retry"
YES_NO: Final = {True: "yes", False: "no"}


class Action(StrEnum):
    LOAD = "load"
    UNLOAD = "unload"
    RETRY = "retry"


@dataclass(frozen=True)
class Loading:
    elapsed_s: float | None
    usual_s: float | None

    @property
    def text(self) -> str:
        """``0:42 elapsed · usually takes 1:10`` (no "usually" without past loads)."""
        parts = [f"{clock(self.elapsed_s)} elapsed" if self.elapsed_s is not None else "Waiting to start"]
        if self.usual_s is not None:
            parts.append(f"usually takes {clock(self.usual_s)}")
        return " · ".join(parts)

    @property
    def progress(self) -> float | None:
        """Share of the usual load time gone by; never 100 % before the server says ready."""
        if self.elapsed_s is None or not self.usual_s:
            return None
        return min(self.elapsed_s / self.usual_s, 0.99)


@dataclass(frozen=True)
class DialogView:
    headline: str  # the status words without the reason: "Offline", "Loaded & Ready", ...
    reason: str | None  # always set when Offline or failed
    facts: tuple[tuple[str, str], ...]
    simulated: bool
    manual_start: str | None  # external models: how a person starts them
    actions: tuple[Action, ...]
    load_blocked: str | None  # why Load is disabled (Offline), None when it can be clicked
    loading: Loading | None  # while starting
    failed: bool
    restart_error: str | None  # crashed or waiting to restart: what went wrong last


def facts(status: ModelStatus) -> tuple[tuple[str, str], ...]:
    memory = gb(status.memory_gb) if status.memory_gb is not None else "not given (not checked)"
    idle = f"unloads after {span(status.idle_unload_s)} idle" if status.idle_unload_s else "stays loaded"
    return (
        ("Engine", status.engine),
        ("Runtime", status.runtime),
        ("Host", status.host or "this machine"),
        ("Size", status.size or "—"),
        ("Format", status.format or "—"),
        ("URL", status.url),
        ("Tools", YES_NO[status.supports_tools]),
        ("Memory", memory),
        ("Idle", idle),
    )


def memory_text(memory: MemoryView | None, host: str | None = None) -> str:
    """The budget line under a model with memory_gb: what is free, and who holds the rest."""
    if memory is None:
        where = host or "its host"
        unchecked = "so loads there are unchecked: set DXG_MEMORY_BUDGET_GB"
        return f"Memory: no budget is known on {where}, {unchecked}"
    held = ", ".join(f"{h.model_id} {gb(h.memory_gb)}" for h in memory.holders) or "nothing"
    return f"Memory: {gb(max(memory.free_gb, 0.0))} free ({memory.budget.source}); held: {held}"


def _headline(status: ModelStatus) -> str:
    # status.status is "Offline: <reason>", "Failed: <reason>" or "Restarting… (<error>)"; the
    # reason gets a line of its own, so the headline keeps only the words.
    label = status.status
    for detail in (status.reason, status.last_error):
        if not detail:
            continue
        for suffix in (f": {detail}", f" ({detail})"):
            label = label.removesuffix(suffix)
    return label


def _actions(status: ModelStatus) -> tuple[Action, ...]:
    if not status.can_load:
        return ()
    if status.phase == Phase.FAILED:
        return (Action.RETRY,)
    if status.desired == LOADED:
        # Loading, ready, or crashed and about to restart: Unload also cancels or stops retries.
        return (Action.UNLOAD,)
    if status.phase in RUNNING:
        return ()  # Unloading…: nothing to do but wait for it to go
    return (Action.LOAD,)


def dialog_view(status: ModelStatus, now: float) -> DialogView:
    starting = status.phase == Phase.STARTING and status.desired == LOADED
    queued = status.phase == Phase.STOPPED and status.desired == LOADED and status.available
    loading = None
    if starting or queued:
        elapsed = now - status.since if starting and status.since is not None else None
        loading = Loading(elapsed_s=elapsed, usual_s=status.usual_load_s)
    restarting = status.phase in (Phase.CRASHED, Phase.BACKOFF) and status.desired == LOADED
    reason = status.reason
    if reason is None and status.status.startswith(OFFLINE_LABEL):
        reason = "no reason was given"  # never an Offline without a why
    return DialogView(
        # The elapsed time moves to the loading line, so the headline stays the plain words.
        headline=LOADING_LABEL if loading is not None else _headline(status),
        reason=reason,
        facts=facts(status),
        simulated=status.simulated,
        manual_start=status.manual_start,
        actions=_actions(status),
        load_blocked=None if status.available else (reason or "not available"),
        loading=loading,
        failed=status.phase == Phase.FAILED,
        restart_error=status.last_error if restarting else None,
    )
