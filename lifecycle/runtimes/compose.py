"""Models run as a service of a compose file (``runtime: compose``), e.g. compose/nim.yaml.

Starting is ``<compose> -p <project> -f <file> -f <override> up -d --no-deps <service>``, run
with an argv list (never a shell) and the environment os.environ + the catalog's ``env``, so
``- NGC_API_KEY`` pass-throughs in the file find their values. The project is the catalog's
``compose.project`` or ``dxg-<instance>``, so two app instances never share containers. The
override file (composecli.write_override) gives the container the same dxg labels the docker
runtime uses, so everything after the start goes through the Docker SDK, shared with that
runtime (container_runtime.py): inspect, find_managed, log copying, and stop.

Stop does not call ``compose stop``: that needs the file to still parse with the same
environment, which an adopted container (from an earlier app run) or an edited file cannot
promise. ``compose stop -t`` is a ``docker stop -t`` per container, which the SDK does directly;
the container is then removed (see container_runtime), and the project's network too once the
project has no container left.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from docker import DockerClient
from docker.errors import APIError
from docker.models.containers import Container

from lifecycle.catalog import ComposeSettings, ModelSpec, RuntimeKind
from lifecycle.core.events import check_model_id
from lifecycle.core.values import Handle
from lifecycle.runtimes.composecli import (
    NOT_INSTALLED,
    UP_TIMEOUT_S,
    ComposeCall,
    ServiceConfig,
    detect_tool,
    environment_key,
    file_key,
    read_config,
    trim,
    write_override,
)
from lifecycle.runtimes.container_labels import managed_labels
from lifecycle.runtimes.container_runtime import ContainerRuntime
from lifecycle.runtimes.dockerhost import DockerHost
from lifecycle.runtimes.protocol import ComposeInvalid, RuntimeFailure, env_problem, server_env
from settings import Settings

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
# Parsed configs kept (the tool takes ~0.4 s per call, and check() runs on every status refresh).
CONFIG_CACHE_SIZE = 16

# The parsed services, or why the tool rejected the file.
ConfigOutcome = dict[str, ServiceConfig] | str


class ComposeRuntime(ContainerRuntime):
    kind = RuntimeKind.COMPOSE.value

    def __init__(self, settings: Settings, host: DockerHost | None = None) -> None:
        super().__init__(settings, host)
        self._tool: tuple[str, ...] | None = None
        self._configs: dict[tuple[object, ...], ConfigOutcome] = {}
        self._cache_lock = threading.Lock()
        # `up` creates the project's network, which a concurrent stop may be pruning.
        self._project_lock = threading.Lock()

    def project(self, spec: ModelSpec) -> str:
        assert spec.compose is not None
        return spec.compose.project or f"dxg-{self.settings.instance}"

    def override_path(self, model_id: str) -> Path:
        # The id alphabet keeps this inside the run folder (see pidfile.PidDir.path).
        folder = self.settings.run_dir / self.settings.instance / "compose"
        return folder / f"{check_model_id(model_id)}.override.yaml"

    # --- can it start? -------------------------------------------------------------------------

    def _preflight(self, spec: ModelSpec) -> RuntimeFailure | None:
        compose = spec.compose
        if compose is None:
            return RuntimeFailure(f"model {spec.id} has no compose settings, so the app cannot start it")
        tool = self._compose_tool()
        if tool is None:
            return RuntimeFailure(NOT_INSTALLED)
        if not compose.file.is_file():
            return ComposeInvalid(str(compose.file), "the file does not exist")
        with self.host.calls() as client:
            client.ping()
            problem = env_problem(spec)
            if problem is not None:
                return problem
            services = self._config(self._call(spec, tool, with_override=False))
            if isinstance(services, ComposeInvalid):
                return services
            service = services.get(compose.service)
            if service is None:
                defined = ", ".join(services) or "no services"
                return ComposeInvalid(
                    str(compose.file), f"there is no service {compose.service!r}; it defines: {defined}"
                )
            problem = self._running_problem(spec.id, self._previous(client, spec))
            if problem is None and service.image is not None:
                problem = self._image_problem(client, service.image)
            return problem or self._port_problem(client, service.ports)

    def _compose_tool(self) -> tuple[str, ...] | None:
        # Found once; while there is none, look again next time (it may get installed).
        if self._tool is None:
            self._tool = detect_tool()
        return self._tool

    def _call(self, spec: ModelSpec, tool: tuple[str, ...], *, with_override: bool) -> ComposeCall:
        compose = spec.compose
        assert compose is not None
        # Absolute, since the tool runs in the file's folder (where compose looks for .env).
        file = compose.file.resolve()
        files = (file, self.override_path(spec.id).resolve()) if with_override else (file,)
        env = {**os.environ, **server_env(spec)}
        return ComposeCall(tool=tool, project=self.project(spec), files=files, env=env)

    def _config(self, call: ComposeCall) -> dict[str, ServiceConfig] | ComposeInvalid:
        key = (call.tool, call.project, file_key(call.files), environment_key(call.env))
        with self._cache_lock:
            outcome = self._configs.get(key)
        if outcome is None:
            # Outside the lock: two threads may both ask the tool once, which is harmless.
            outcome = read_config(call)
            with self._cache_lock:
                if len(self._configs) >= CONFIG_CACHE_SIZE:
                    self._configs.pop(next(iter(self._configs)))
                self._configs[key] = outcome
        # A fresh error each time: a cached exception would grow its traceback with every raise.
        return ComposeInvalid(str(call.files[0]), outcome) if isinstance(outcome, str) else outcome

    # --- start ---------------------------------------------------------------------------------

    def start(self, spec: ModelSpec) -> Handle:
        problem = self._problem(spec)
        if problem is not None:
            raise problem
        compose, tool = spec.compose, self._tool
        # The preflight says so.
        assert compose is not None
        assert tool is not None
        labels = managed_labels(self.settings.instance, spec.id, self.kind)
        write_override(self.override_path(spec.id), compose.service, labels)
        call = self._call(spec, tool, with_override=True)
        args = ("up", "-d", "--no-deps", compose.service)
        env_names = ", ".join(sorted(spec.env)) or "none"
        self._start_log(
            spec.id,
            f"starting {spec.id}: {call.shown(*args)} (catalog env: {env_names}, "
            f"instance {self.settings.instance})",
        )
        with self.host.calls() as client:
            self._clear_previous(spec.id, self._previous(client, spec))
        with self._project_lock:
            result = call.run(*args, timeout_s=UP_TIMEOUT_S)
        with self.host.calls() as client:
            created = self._previous(client, spec)
            if result.returncode != 0:
                # A container that was created but could not start has nothing worth keeping.
                for container in created:
                    self._remove(container)
                detail = trim(result.stderr or result.stdout) or f"exit code {result.returncode}"
                message = f"`{call.shown(*args)}` failed: {detail}"
                self._note(spec.id, message)
                raise RuntimeFailure(message)
        if not created:
            raise RuntimeFailure(
                f"`{call.shown(*args)}` succeeded but no container of service {compose.service} exists"
            )
        return self._begin(spec, created[0])

    def _previous(self, client: DockerClient, spec: ModelSpec) -> list[Container]:
        """The service's containers in the project, newest first (compose reuses them otherwise)."""
        assert spec.compose is not None
        filters = service_filter(self.project(spec), spec.compose)
        return client.containers.list(all=True, filters=filters)

    # --- after a stop --------------------------------------------------------------------------

    def _removed(self, container: Container) -> None:
        """Remove the project's network once its last container is gone, as ``compose down`` would."""
        project = (container.labels or {}).get(PROJECT_LABEL)
        if not project:
            return
        label = {"label": [f"{PROJECT_LABEL}={project}"]}
        with self._project_lock, self.host.calls() as client:
            if client.containers.list(all=True, filters=label):
                return
            for network in client.networks.list(filters=label):
                # Still in use (a container joined it by hand) or already gone: leave it.
                with contextlib.suppress(APIError):
                    network.remove()

    def _handle_extra(self, labels: Mapping[str, str]) -> dict[str, str]:
        return {"project": labels.get(PROJECT_LABEL, ""), "service": labels.get(SERVICE_LABEL, "")}


def service_filter(project: str, compose: ComposeSettings) -> dict[str, list[str]]:
    return {
        "label": [
            f"{PROJECT_LABEL}={project}",
            f"{SERVICE_LABEL}={compose.service}",
            f"{ONEOFF_LABEL}=False",
        ]
    }
