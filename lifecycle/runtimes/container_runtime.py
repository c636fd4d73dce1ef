"""What the docker and compose runtimes do alike once a container exists.

They differ only in how a container comes to be (the SDK's create/start versus
``compose up``). Observing, stopping, finding, log copying and the availability checks
that need the engine (image present, port free) are the same and live here.

Stop semantics: ``stop`` sends the image's stop signal, lets Docker kill after the grace
period, reads the final state (exit code, OOM) into the returned Observation, and then
removes the container. The host stays clean and the output is already in logs/{id}.log.
A container that exits on its own (a crash) is kept, so ``inspect`` can read its exit code
and OOM flag; the next ``start`` or ``stop`` of that model removes it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from docker import DockerClient
from docker.errors import APIError, ImageNotFound, NotFound
from docker.models.containers import Container

from lifecycle.catalog import ModelSpec
from lifecycle.core.events import redact_text
from lifecycle.core.values import Availability, ExitCallback, Handle, Observation
from lifecycle.runtimes import logfile
from lifecycle.runtimes.container_labels import (
    LABEL_MODEL,
    handle_for,
    label_filter,
    observe,
)
from lifecycle.runtimes.dockerhost import DockerHost
from lifecycle.runtimes.logfollow import LogFollowers
from lifecycle.runtimes.ports import port_holder, port_is_free
from lifecycle.runtimes.protocol import AlreadyRunning, ImageMissing, PortInUse, RuntimeFailure
from settings import Settings

log = logging.getLogger(__name__)

# How long stop() waits for the follower to copy the container's last lines.
DRAIN_S = 5.0
WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # noqa: S104 -- names the wildcard, binds nothing


@dataclass(frozen=True)
class ContainerExit:
    """One ``die`` or ``oom`` event of a managed container."""

    model_id: str
    container_id: str
    action: str
    exit_code: int | None
    at: float


class ContainerRuntime:
    """The shared half of DockerRuntime and ComposeRuntime; subclasses add check and start."""

    kind: str

    def __init__(self, settings: Settings, host: DockerHost | None = None) -> None:
        self.settings = settings
        self.host = host or DockerHost()
        # Called as on_exit(model_id, exit_code) when a container's output ends because it
        # exited, also after stop(); the reconciler sets it to wake up at once.
        self.on_exit: ExitCallback | None = None
        self._followers = LogFollowers(self.host, settings.log_dir, self._output_ended)

    # --- can it start? -------------------------------------------------------------------------

    def check(self, spec: ModelSpec) -> Availability:
        """Available, or Offline with the first thing that would make ``start`` fail."""
        try:
            problem = self._problem(spec)
        except RuntimeFailure as exc:  # the engine went away halfway
            problem = exc
        return Availability.ok() if problem is None else Availability.offline(str(problem))

    def _problem(self, spec: ModelSpec) -> RuntimeFailure | None:
        """The preflight's answer; an engine that answers with an error is a reason too."""
        try:
            return self._preflight(spec)
        except APIError as exc:
            return RuntimeFailure(f"Docker refused a check for {spec.id}: {exc.explanation or exc}")

    def _preflight(self, spec: ModelSpec) -> RuntimeFailure | None:
        raise NotImplementedError

    @staticmethod
    def _image_problem(client: DockerClient, image: str) -> ImageMissing | None:
        # Never pulled here: a NIM image is tens of GB and needs the user's registry login.
        try:
            client.images.get(image)
        except ImageNotFound:
            return ImageMissing(image)
        return None

    @staticmethod
    def _port_problem(client: DockerClient, bindings: Iterable[tuple[str, int]]) -> PortInUse | None:
        for host, port in bindings:
            # A wildcard bind collides with anything on the port; loopback shows it.
            probe = "127.0.0.1" if host in WILDCARD_HOSTS else host
            if not port_is_free(port, probe):
                return PortInUse(port, port_holder(port, client))
        return None

    @staticmethod
    def _running_problem(model_id: str, containers: Iterable[Container]) -> AlreadyRunning | None:
        # A second server of the same model would only fight the first for its port and GPU.
        for container in containers:
            if observe(container.attrs).running:
                return AlreadyRunning(model_id, f"container {container.name or container.short_id}")
        return None

    # --- start helpers -------------------------------------------------------------------------

    def _clear_previous(self, model_id: str, containers: Iterable[Container]) -> None:
        """Remove a model's exited containers, so the new one starts with a clean state and name."""
        for container in containers:
            code = observe(container.attrs).exit_code
            self._remove(container)
            self._note(model_id, f"removed the previous container {container.name} (exit code {code})")

    def _begin(self, spec: ModelSpec, container: Container) -> Handle:
        """Follow the new container's output from its first line and hand out its handle."""
        container.reload()
        self._followers.follow(container.id or "", spec.id, since=None)
        self._note(spec.id, f"started {spec.id} as container {container.name} ({container.short_id})")
        return self._handle(container)

    def _start_log(self, model_id: str, text: str) -> None:
        path = self._log(model_id)
        logfile.rotate_if_large(path)
        logfile.write_note(path, text)

    # --- observe -------------------------------------------------------------------------------

    def inspect(self, handle: Handle) -> Observation:
        try:
            with self.host.calls() as client:
                container = client.containers.get(handle.ref)
        except NotFound:
            return Observation(running=False, started_at=handle.started_at, missing=True)
        observed = observe(container.attrs)
        if observed.running:
            # An adopted container (or one whose follower gave up) gets its output copied again.
            self._followers.follow(container.id or "", handle.model_id, since=self._resume_point(handle))
        return observed

    def find_managed(self) -> list[Handle]:
        """This instance's containers of this runtime, running or exited."""
        with self.host.calls() as client:
            containers = client.containers.list(
                all=True, filters=label_filter(self.settings.instance, self.kind)
            )
        return [self._handle(container) for container in containers]

    def logs(self, handle: Handle | None, model_id: str, tail: int) -> str:
        return redact_text(logfile.tail(self._log(model_id), tail))

    def exits(self, since: float, until: float | None = None) -> list[ContainerExit]:
        """This runtime's ``die``/``oom`` events between ``since`` and ``until`` (default: now).

        For a watcher that wants Docker's word on exits it missed, e.g. while the app was down.
        """
        filters = {
            **label_filter(self.settings.instance, self.kind),
            "type": ["container"],
            "event": ["die", "oom"],
        }
        end = time.time() if until is None else until
        with self.host.calls() as client:
            events = list(client.events(since=since, until=end, filters=filters, decode=True))
        found: list[ContainerExit] = []
        for event in events:
            attributes = (event.get("Actor") or {}).get("Attributes") or {}
            code = attributes.get("exitCode")
            nanos = event.get("timeNano")
            found.append(
                ContainerExit(
                    model_id=attributes.get(LABEL_MODEL, ""),
                    container_id=str((event.get("Actor") or {}).get("ID") or event.get("id") or ""),
                    action=str(event.get("Action") or event.get("status") or ""),
                    exit_code=int(code) if code is not None else None,
                    at=int(nanos) / 1e9 if nanos else float(event.get("time") or 0),
                )
            )
        return found

    # --- stop ----------------------------------------------------------------------------------

    def stop(self, handle: Handle, grace_s: float) -> Observation:
        """Stop signal, SIGKILL after ``grace_s`` (Docker counts whole seconds: rounded up), remove."""
        grace = max(0, math.ceil(grace_s))
        try:
            with self.host.calls() as client:
                container = client.containers.get(handle.ref)
                self._note(
                    handle.model_id,
                    f"stopping {handle.model_id} (container {container.name}): "
                    f"stop signal, SIGKILL after {grace}s",
                )
                container.stop(timeout=grace)
                container.reload()
                observed = observe(container.attrs)
                self._followers.wait(container.id or "", DRAIN_S)
                self._remove(container)
        except NotFound:
            self._note(handle.model_id, f"{handle.model_id}: container {handle.ref[:12]} is already gone")
            return Observation(running=False, started_at=handle.started_at, missing=True)
        oom = ", OOM-killed" if observed.oom_killed else ""
        self._note(handle.model_id, f"stopped {handle.model_id} (exit code {observed.exit_code}{oom})")
        return observed

    def _remove(self, container: Container) -> None:
        # v=True: anonymous volumes of a removed container are never used again, only leaked.
        with contextlib.suppress(NotFound):
            container.remove(v=True, force=True)
        self._removed(container)

    def _removed(self, container: Container) -> None:
        """Hook after a container was removed (compose prunes its project's network)."""

    # --- helpers -------------------------------------------------------------------------------

    def _handle(self, container: Container) -> Handle:
        return handle_for(container, self.kind, self._handle_extra(container.labels or {}))

    def _handle_extra(self, labels: Mapping[str, str]) -> dict[str, str]:
        return {}

    def _output_ended(self, model_id: str, container_id: str) -> None:
        """A follower's output ended: note how the container exited and tell on_exit."""
        try:
            with self.host.calls() as client:
                container = client.containers.get(container_id)
        except (NotFound, RuntimeFailure):
            return  # removed, or the engine is gone: inspect() will say so
        observed = observe(container.attrs)
        if observed.running:
            return  # the follower gave up on a live container; inspect() starts another
        oom = ", OOM-killed" if observed.oom_killed else ""
        self._note(
            model_id, f"{model_id} (container {container.name}) exited with code {observed.exit_code}{oom}"
        )
        callback = self.on_exit
        if callback is not None:
            try:
                callback(model_id, observed.exit_code)
            except Exception:  # a broken callback must not kill the follower silently
                log.exception("on_exit callback failed for %s", model_id)

    def _resume_point(self, handle: Handle) -> float | None:
        """Where copying resumes for an adopted container: the log file's last write."""
        try:
            return max(self._log(handle.model_id).stat().st_mtime, handle.started_at)
        except FileNotFoundError:
            return None

    def _log(self, model_id: str) -> Path:
        return logfile.log_path(self.settings.log_dir, model_id)

    def _note(self, model_id: str, text: str) -> None:
        with contextlib.suppress(OSError):
            logfile.write_note(self._log(model_id), text)
