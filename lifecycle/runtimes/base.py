"""The one small protocol every runtime speaks, and the errors a user can act on.

The reconciler, the API and the UI see runtimes only through ``Runtime``; the adapters
(process, docker, compose, external) are the only code that touches the outside world.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lifecycle.catalog import ModelSpec

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


@runtime_checkable
class Runtime(Protocol):
    kind: str

    def check(self, spec: ModelSpec) -> Availability:
        """Can ``spec`` be started now? Offline always carries the reason."""
        ...

    def start(self, spec: ModelSpec) -> Handle:
        """Start the server and return at once; readiness is the probes' business."""
        ...

    def stop(self, handle: Handle, grace_s: float) -> Observation:
        """Ask the server to stop, kill it after ``grace_s``, and report how it ended."""
        ...

    def inspect(self, handle: Handle) -> Observation: ...

    def find_managed(self) -> list[Handle]:
        """The servers this app instance started and that still exist, for adoption."""
        ...

    def logs(self, handle: Handle | None, model_id: str, tail: int) -> str:
        """The last ``tail`` lines of the model's log."""
        ...


class RuntimeFailure(Exception):
    """Base of the errors runtimes raise; ``str()`` is the message shown to the user."""


class EngineUnavailable(RuntimeFailure):
    def __init__(self, endpoint: str, detail: str) -> None:
        self.endpoint = endpoint
        super().__init__(
            f"Docker is not reachable at {endpoint}: {detail}. "
            "Start the Docker engine (e.g. `systemctl start docker` or `dockerd`) and try again."
        )


class ImageMissing(RuntimeFailure):
    def __init__(self, image: str) -> None:
        self.image = image
        super().__init__(
            f"image {image} is not on this machine. Pull it first: `docker pull {image}` "
            "(NIM images need `docker login nvcr.io` with your NGC API key)."
        )


class ModelFilesMissing(RuntimeFailure):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"model files not found at {path}")


class AlreadyRunning(RuntimeFailure):
    """A server of this model is already up; a second would only fight it for its port and GPU."""

    def __init__(self, model_id: str, holder: str) -> None:
        self.model_id = model_id
        self.holder = holder  # "pid 1234", "container dxg-abc-llama"
        super().__init__(f"{model_id} is already running as {holder}; stop it before starting it again")


class EnvMissing(RuntimeFailure):
    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(
            f"environment variable{'s' if len(names) > 1 else ''} {', '.join(names)} not set; "
            f"export {'them' if len(names) > 1 else 'it'} in the app's environment "
            "(the catalog takes it from there, so the secret never sits in models.yaml)"
        )


def env_problem(spec: ModelSpec) -> EnvMissing | None:
    """The catalog's pass-through variables (``NAME: null``) the app's environment lacks, if any."""
    missing = spec.missing_env(os.environ)
    return EnvMissing(missing) if missing else None


class ExecutableMissing(RuntimeFailure):
    def __init__(self, program: str, workdir: Path | None) -> None:
        self.program = program
        if os.sep in program:
            where = f" (relative to {workdir})" if workdir and not os.path.isabs(program) else ""
            message = f"executable {program}{where} does not exist or is not executable"
        else:
            message = f"executable {program!r} not found on PATH"
        super().__init__(f"{message}; install it or fix load_command")


class WorkdirMissing(RuntimeFailure):
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        super().__init__(f"working directory {workdir} does not exist; fix workdir in the catalog")


class PortInUse(RuntimeFailure):
    def __init__(self, port: int, holder: str | None) -> None:
        self.port = port
        self.holder = holder
        by = f" by {holder}" if holder else " by another program"
        super().__init__(f"port {port} is already in use{by}")


class PrematureExit(RuntimeFailure):
    def __init__(self, exit_code: int | None, log_tail: str) -> None:
        self.exit_code = exit_code
        self.log_tail = log_tail
        tail = f"; last log lines:\n{log_tail}" if log_tail.strip() else ""
        super().__init__(f"server exited with code {exit_code} before it was ready{tail}")


class StartTimeout(RuntimeFailure):
    def __init__(self, timeout_s: float, last_reason: str) -> None:
        self.timeout_s = timeout_s
        self.last_reason = last_reason
        super().__init__(f"server not ready after {timeout_s:g}s (last probe: {last_reason})")


class ComposeInvalid(RuntimeFailure):
    def __init__(self, file: str, detail: str) -> None:
        self.file = file
        super().__init__(f"compose file {file} is invalid: {detail}")
