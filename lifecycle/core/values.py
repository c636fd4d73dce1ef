"""Plain values that cross between the core, the runtimes and the store: no behaviour, no I/O.

A ``Handle`` is stored as JSON in events and the projection; ``Availability`` and
``Observation`` are what a runtime reports and the planner and status view read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# on_exit(model_id, exit_code), called from a runtime's own thread when a server it watches exits.
ExitCallback = Callable[[str, int | None], None]


@dataclass(frozen=True)
class Handle:
    """Enough to find a started server again, also from a later app instance.

    It is stored as JSON in events and the projection, so it holds plain values only.
    """

    runtime: str
    model_id: str
    # The pid for processes, the container id for docker and compose.
    ref: str
    started_at: float
    # Per-runtime details: process group, container name, compose project and service.
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Handle:
        return cls(
            runtime=str(data["runtime"]),
            model_id=str(data["model_id"]),
            ref=str(data["ref"]),
            started_at=float(data["started_at"]),
            extra={str(k): str(v) for k, v in dict(data.get("extra") or {}).items()},
        )


@dataclass(frozen=True)
class Availability:
    """Whether a model can be started now; ``reason`` says why not, in words a user can act on."""

    available: bool
    reason: str = ""

    @classmethod
    def ok(cls) -> Availability:
        return cls(True)

    @classmethod
    def offline(cls, reason: str) -> Availability:
        return cls(False, reason)


@dataclass(frozen=True)
class Observation:
    """What a runtime sees of a server right now; never inferred from earlier events."""

    running: bool
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: float | None = None
    # The server is gone without a trace (container removed, pid reused or reaped elsewhere).
    missing: bool = False
