"""Models run as one container each (``runtime: docker``), through the Docker SDK.

The container is named ``dxg-{instance}-{model id}`` and labelled as this instance's (see
containers.py). Its restart policy is ``no``: the reconciler is the one supervisor, and two
would fight over every crash. Ports are published on the url's host only (127.0.0.1 unless
the catalog's url says otherwise), so a model server is never exposed to the network by
accident. Observing, stopping and log copying are shared with compose (container_runtime.py).
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
from typing import Any

from docker import DockerClient
from docker.errors import APIError, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest

from lifecycle.catalog import DockerSettings, ModelSpec, RuntimeKind
from lifecycle.core.events import REDACTED, check_model_id, redact
from lifecycle.core.values import Handle
from lifecycle.runtimes.container_labels import managed_labels
from lifecycle.runtimes.container_runtime import ContainerRuntime
from lifecycle.runtimes.protocol import ImageMissing, RuntimeFailure, env_problem, server_env

GPU_HINT = (
    "the model asks for GPUs (docker.gpus) but Docker cannot hand them out here; install the "
    "NVIDIA Container Toolkit and restart Docker, or remove docker.gpus"
)


def device_requests(gpus: str | tuple[str, ...] | None) -> list[DeviceRequest]:
    """``--gpus all`` or ``--gpus device=0,1`` as the API spells it."""
    if gpus is None:
        return []
    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])]


def bind_address(host: str) -> str:
    """The host IP to publish ports on: the url's own, so 127.0.0.1 stays local."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return socket.gethostbyname(host)
    except OSError as exc:
        raise RuntimeFailure(f"cannot publish ports on {host!r} from the url: {exc}") from exc


def create_args(spec: ModelSpec, settings: DockerSettings, name: str, instance: str) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for a catalog entry."""
    bind = bind_address(spec.host)
    return {
        "image": settings.image,
        "name": name,
        "labels": managed_labels(instance, spec.id, RuntimeKind.DOCKER.value),
        "environment": server_env(spec),
        "ports": {f"{inner}/tcp": (bind, outer) for inner, outer in settings.ports.items()},
        # The string form keeps docker run's -v behaviour: a missing host folder is created.
        "volumes": [f"{v.source}:{v.target}:{'ro' if v.read_only else 'rw'}" for v in settings.volumes],
        "restart_policy": {"Name": "no"},
        "shm_size": settings.shm_size,
        "mem_limit": settings.mem_limit,
        # Swap would let a server crawl past its limit instead of being OOM-killed and reported.
        "memswap_limit": settings.mem_limit,
        "command": list(settings.command) if settings.command else None,
        "entrypoint": list(settings.entrypoint) if settings.entrypoint else None,
        "device_requests": device_requests(settings.gpus),
    }


def _words(argv: tuple[str, ...]) -> str:
    # Quoting "***" would hand the log's redactor a quoted token to swallow along with what follows.
    return " ".join(word if word == REDACTED else shlex.quote(word) for word in redact(list(argv)))


def describe(spec: ModelSpec, settings: DockerSettings, name: str, instance: str) -> str:
    """The start note for the log: what runs, never an env value."""
    bind = bind_address(spec.host)
    ports = ", ".join(f"{bind}:{outer}->{inner}" for inner, outer in settings.ports.items()) or "none"
    parts = [f"image {settings.image} as container {name}", f"ports {ports}"]
    if settings.entrypoint:
        parts.append(f"entrypoint {_words(settings.entrypoint)}")
    if settings.command:
        parts.append(f"command {_words(settings.command)}")
    if settings.mem_limit:
        parts.append(f"memory {settings.mem_limit}")
    if settings.gpus:
        parts.append(f"gpus {settings.gpus if settings.gpus == 'all' else ','.join(settings.gpus)}")
    parts.append(f"catalog env: {', '.join(sorted(spec.env)) or 'none'}")
    parts.append(f"instance {instance}")
    return f"starting {spec.id}: " + "; ".join(parts)


class DockerRuntime(ContainerRuntime):
    kind = RuntimeKind.DOCKER.value

    def container_name(self, model_id: str) -> str:
        # Validated here too, not only by the catalog: a name is also how stop() finds its target.
        return f"dxg-{self.settings.instance}-{check_model_id(model_id)}"

    def _preflight(self, spec: ModelSpec) -> RuntimeFailure | None:
        if spec.docker is None:
            return RuntimeFailure(f"model {spec.id} has no docker settings, so the app cannot start it")
        with self.host.calls() as client:
            previous = self._previous(client, spec.id)
            problem = (
                self._running_problem(spec.id, previous)
                or self._image_problem(client, spec.docker.image)
                or env_problem(spec)
            )
            if problem is not None:
                return problem
            bind = bind_address(spec.host)
            return self._port_problem(client, [(bind, port) for port in spec.docker.ports.values()])

    def start(self, spec: ModelSpec) -> Handle:
        problem = self._problem(spec)
        if problem is not None:
            raise problem
        assert spec.docker is not None  # the preflight says so
        name = self.container_name(spec.id)
        self._start_log(spec.id, describe(spec, spec.docker, name, self.settings.instance))
        with self.host.calls() as client:
            self._clear_previous(spec.id, self._previous(client, spec.id))
            container = self._create(client, spec, spec.docker, name)
            try:
                container.start()
            except APIError as exc:
                self._remove(container)
                raise self._failure(spec, "start", exc) from exc
            return self._begin(spec, container)

    def _create(
        self, client: DockerClient, spec: ModelSpec, settings: DockerSettings, name: str
    ) -> Container:
        try:
            return client.containers.create(**create_args(spec, settings, name, self.settings.instance))
        except ImageNotFound as exc:  # removed since the preflight looked
            raise ImageMissing(settings.image) from exc
        except APIError as exc:
            raise self._failure(spec, "create", exc) from exc

    def _failure(self, spec: ModelSpec, step: str, exc: APIError) -> RuntimeFailure:
        detail = str(exc.explanation or exc)
        if spec.docker is not None and spec.docker.gpus and "gpu" in detail.lower():
            detail = f"{detail}; {GPU_HINT}"
        message = f"docker could not {step} {self.container_name(spec.id)}: {detail}"
        self._note(spec.id, message)
        return RuntimeFailure(message)

    def _previous(self, client: DockerClient, model_id: str) -> list[Container]:
        """The container holding this model's name, if any (the name is ours: it carries the instance)."""
        try:
            return [client.containers.get(self.container_name(model_id))]
        except NotFound:
            return []
