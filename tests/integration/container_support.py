"""Helpers for the docker and compose runtime tests: cleanup, settings, logs (the simulator image is
the ``sim_image`` fixture)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable

from docker import DockerClient
from docker.errors import APIError, NotFound

from lifecycle.core.values import Handle, Observation
from lifecycle.runtimes.container_labels import LABEL_INSTANCE
from lifecycle.runtimes.protocol import Runtime
from settings import Settings
from simulator.events import parse_event
from tests.support import log_text as support_log_text

COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
# A Docker endpoint nothing listens on: what "Docker is not running" looks like.
DEAD_SOCKET = "unix:///tmp/nonexistent.sock"


def sim_args(model_id: str, *extra: str) -> list[str]:
    """The simulator's arguments for a NIM on port 8000 inside a container."""
    return ["--engine", "nim", "--port", "8000", "--host", "0.0.0.0", "--model-id", model_id, *extra]


def remove_leftovers(client: DockerClient, instances: Iterable[str], projects: Iterable[str] = ()) -> None:
    """Remove every container of these instances (by label) and compose projects, and their networks.

    Runs after each test whatever happened, so a failed test leaves nothing running.
    """
    filters = [{"label": f"{LABEL_INSTANCE}={instance}"} for instance in instances]
    filters += [{"label": f"{COMPOSE_PROJECT_LABEL}={project}"} for project in projects]
    for selector in filters:
        for container in client.containers.list(all=True, filters=selector):
            with contextlib.suppress(NotFound):
                container.remove(force=True, v=True)
    for project in projects:
        for network in client.networks.list(filters={"label": f"{COMPOSE_PROJECT_LABEL}={project}"}):
            with contextlib.suppress(NotFound, APIError):
                network.remove()


def log_text(settings: Settings, model_id: str) -> str:
    return support_log_text(settings.log_dir, model_id)


def sim_event_names(text: str) -> list[str]:
    """The simulator's ``SIM_EVENT`` names in a log, in order."""
    return [event.name for line in text.splitlines() if (event := parse_event(line))]


def exited(runtime: Runtime, handle: Handle) -> Observation | None:
    """What ``inspect`` sees once the server is no longer running; None while it runs."""
    observed = runtime.inspect(handle)
    return observed if not observed.running else None


class ExitRecorder:
    """An on_exit callback that remembers its calls, safe to read from the test's thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []
        self._lock = threading.Lock()

    def __call__(self, model_id: str, exit_code: int | None) -> None:
        with self._lock:
            self.calls.append((model_id, exit_code))

    def seen(self) -> list[tuple[str, int | None]]:
        with self._lock:
            return list(self.calls)
