"""What the docker and compose runtimes agree on: labels, reading a container's state, handles.

Every container the app starts carries ``dxg.managed``, ``dxg.instance``, ``dxg.model`` and
``dxg.runtime`` labels. They are how a later app run finds its servers again, and why two
app instances on one engine never touch each other's containers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from docker.models.containers import Container

from lifecycle.core.values import Handle, Observation

LABEL_MANAGED = "dxg.managed"
LABEL_INSTANCE = "dxg.instance"
LABEL_MODEL = "dxg.model"
LABEL_RUNTIME = "dxg.runtime"


def managed_labels(instance: str, model_id: str, runtime: str) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_INSTANCE: instance,
        LABEL_MODEL: model_id,
        LABEL_RUNTIME: runtime,
    }


def label_filter(instance: str, runtime: str, model_id: str | None = None) -> dict[str, list[str]]:
    """A ``filters=`` argument matching one instance's containers of one runtime (and model)."""
    labels = {LABEL_MANAGED: "true", LABEL_INSTANCE: instance, LABEL_RUNTIME: runtime}
    if model_id is not None:
        labels[LABEL_MODEL] = model_id
    return {"label": [f"{key}={value}" for key, value in labels.items()]}


def parse_docker_time(text: str | None) -> float | None:
    """Epoch seconds of a timestamp like ``2024-05-01T10:00:00.123456789Z``; None for "never"."""
    # Docker says "never" with year 1; Python 3.11 parses the nanoseconds itself (cut to micro).
    if not text or text.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def observe(attrs: Mapping[str, Any]) -> Observation:
    """An Observation from ``docker inspect`` data."""
    state = attrs.get("State") or {}
    running = bool(state.get("Running"))
    # A container that was created but never started has ExitCode 0, which would read as a clean exit.
    never_started = state.get("Status") == "created"
    exit_code = None if running or never_started else int(state.get("ExitCode") or 0)
    return Observation(
        running=running,
        exit_code=exit_code,
        oom_killed=bool(state.get("OOMKilled")),
        started_at=parse_docker_time(state.get("StartedAt")),
    )


def handle_for(container: Container, runtime: str, extra: Mapping[str, str] | None = None) -> Handle:
    labels = container.labels or {}
    started = parse_docker_time((container.attrs.get("State") or {}).get("StartedAt"))
    return Handle(
        runtime=runtime,
        model_id=labels.get(LABEL_MODEL, ""),
        ref=container.id or "",
        started_at=started if started is not None else time.time(),
        extra={
            "name": container.name or "",
            "instance": labels.get(LABEL_INSTANCE, ""),
            **(extra or {}),
        },
    )
