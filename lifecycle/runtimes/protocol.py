"""The one small protocol every runtime speaks, and the errors a user can act on.

The values it passes (``Handle``, ``Availability``, ``Observation``) live in
``lifecycle.core.values`` so that the pure core can read them without importing an adapter.

The reconciler, the API and the UI see runtimes only through ``Runtime``; the adapters
(process, docker, compose, external) are the only code that touches the outside world.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

from lifecycle.catalog import ModelSpec
from lifecycle.core import secrets
from lifecycle.core.values import Availability, Handle, Observation


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


# Images this project builds on the machine itself: no registry has them, so pulling fails.
LOCAL_BUILDS: Final[Mapping[str, str]] = {"dxg-sim:local": "make sim-image"}
NGC_REGISTRY: Final = "nvcr.io"


def image_advice(image: str) -> str:
    """How to get ``image`` onto this machine, by where it comes from."""
    build = LOCAL_BUILDS.get(image)
    if build is not None:
        return f"It is built on this machine, never pulled: run `{build}`."
    if image.split("/", 1)[0] == NGC_REGISTRY:
        return (
            f"Log in to NGC first: `docker login {NGC_REGISTRY}` (user `$oauthtoken`, password your "
            f"NGC API key), then `docker pull {image}`."
        )
    return f"Pull it first: `docker pull {image}`."


class ImageMissing(RuntimeFailure):
    def __init__(self, image: str) -> None:
        self.image = image
        super().__init__(f"image {image} is not on this machine. {image_advice(image)}")


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


def server_env(spec: ModelSpec) -> dict[str, str]:
    """The catalog's ``env`` for the server, nulls taken from the app's environment; the secret
    values among them are remembered, so they are masked in every log tail and answer."""
    resolved = spec.resolved_env(os.environ)
    secrets.KNOWN.remember(secrets.secret_env_values(spec.env, resolved))
    return resolved


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
