"""One model as the UI and ``GET /api/models`` show it: catalog entry + projection + availability.

Pure: it combines values the service has already read. External servers are never started by
the app, so their projection stays "stopped"; what the user wants to know is whether they
answer, so a reachable external server reads as loaded and ready.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lifecycle.catalog import ModelSpec, RuntimeKind
from lifecycle.core.projection import ModelState
from lifecycle.core.states import (
    LOADED,
    NOT_ANSWERING_LABEL,
    OFFLINE_LABEL,
    RUNNING,
    UNKNOWN_LABEL,
    Dot,
    Phase,
    Status,
    status,
)
from lifecycle.core.values import Availability


@dataclass(frozen=True)
class ModelStatus:
    id: str
    name: str
    url: str
    # The model name the server expects in chat requests (NIM's "openai/gpt-oss-20b").
    served_model: str
    engine: str
    runtime: str
    size: str | None
    format: str | None
    supports_tools: bool
    simulated: bool
    loaded: bool  # phase ready (the reference note's flag)
    available: bool  # can be started now, or runs already
    can_load: bool  # the app has a way to start it (not external)
    phase: str
    desired: str
    since: float | None
    restarts: int
    last_error: str | None
    status: str  # DESIGN.md's words
    dot: str  # "green" | "orange" | "red"
    reason: str | None  # why Offline or failed
    usual_load_s: float | None  # median of past load durations
    manual_start: str | None  # external models: how to start by hand
    idle_unload_s: float | None = None  # unloaded after this long unused; None: never
    memory_gb: float | None = None  # what it holds once loaded, the catalog's estimate
    host: str | None = None  # the node it runs on, when not this machine (swarm, kubernetes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def model_status(
    spec: ModelSpec,
    state: ModelState | None,
    availability: Availability,
    *,
    usual_load_s: float | None,
    now: float,
    unrecorded: str | None = None,
    not_answering: str | None = None,
    idle_unload_s: float | None = None,
    unobservable: str | None = None,
) -> ModelStatus:
    """``unrecorded``: why the store can't be written right now. What the app last recorded may
    no longer be true (a server may have died unrecorded), so a model it manages reads as
    unknown rather than ready until the store takes writes again."""
    state = state or ModelState(model_id=spec.id)
    external = spec.runtime == RuntimeKind.EXTERNAL
    phase = (Phase.READY if availability.available else Phase.STOPPED) if external else state.phase
    # A running server of ours holds its port, which check() reports as "in use": still available.
    available = availability.available or (not external and phase in RUNNING)
    elapsed = now - state.since if phase == Phase.STARTING and state.since is not None else None
    words = status(
        phase,
        LOADED if external else state.desired,
        available=available,
        unavailable_reason=availability.reason,
        last_error=state.last_error,
        elapsed_s=elapsed,
        usual_s=usual_load_s,
    )
    reason: str | None = None
    if phase == Phase.FAILED:
        reason = state.last_error
    elif not available:
        reason = availability.reason or None
    if not_answering is not None and phase == Phase.READY and not external:
        # Still ready by the record, but its liveness checks fail: the restart may be coming.
        words = Status(Dot.AMBER, f"{NOT_ANSWERING_LABEL} ({not_answering})")
        reason = not_answering
    unseen = unobservable is not None and phase in RUNNING and not external
    if unseen:
        # Its engine or node can't be reached: whatever the record says, nobody can use it now.
        words = Status(Dot.RED, OFFLINE_LABEL)
        reason, available = unobservable, False
    unknown = unrecorded is not None and not external
    if unknown:
        words = Status(Dot.AMBER, UNKNOWN_LABEL)
        reason = unrecorded
    return ModelStatus(
        id=spec.id,
        name=spec.name,
        url=spec.url,
        served_model=spec.served_model,
        engine=str(spec.engine),
        runtime=str(spec.runtime),
        size=spec.size,
        format=spec.format,
        supports_tools=spec.supports_tools,
        simulated=spec.simulated,
        loaded=phase == Phase.READY and not unknown and not unseen,
        available=available,
        can_load=spec.can_load,
        phase=phase.value,
        desired=state.desired,
        since=state.since,
        restarts=state.restarts,
        last_error=state.last_error,
        status=words.label,
        dot=words.dot.value,
        reason=reason,
        usual_load_s=usual_load_s,
        idle_unload_s=idle_unload_s,
        memory_gb=spec.memory_gb,
        manual_start=spec.manual_start if external else None,
        host=host_of(spec),
    )


def host_of(spec: ModelSpec) -> str | None:
    """Where the server runs when the catalog places it off this machine."""
    if spec.swarm is not None:
        return spec.swarm.node
    if spec.kubernetes is not None:
        return f"cluster namespace {spec.kubernetes.namespace}"
    return None
