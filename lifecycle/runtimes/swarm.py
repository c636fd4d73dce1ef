"""Models as Docker Swarm services on the nodes the catalog names (``runtime: swarm``).

Each model is a service ``dxg-{instance}-{model id}`` of one replica, pinned to its node by
a constraint, its ports published in host mode (it answers at its node's address, as the
catalog's url says), labelled as this instance's like the app's containers. Swarm's own
restart policy is ``none``: the reconciler is the one supervisor, and two would fight over
every crash; a crash leaves a failed task whose exit code the reconciler reads, and the
restart is a new service through the usual backoff.

Unloading scales the service to 0, waits for its task to end (stop signal, SIGKILL after
the grace period, which is the service's ``stop_grace_period``), reads the exit code, and
removes the service, so nothing is left on any node.

What the manager cannot tell: whether an image is on a node other than itself. The node's
engine finds out when the task starts, and its "No such image" goes into the model's log and
failure message.

The app talks to one manager per catalog entry: ``swarm.manager`` (or the catalog's
``swarm_manager``), else DOCKER_HOST. Service and node events from each manager wake the
reconciler, so a crash or a node going down is noticed at once rather than at the next tick.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from docker import DockerClient
from docker.errors import APIError, NotFound
from docker.models.services import Service
from docker.types import EndpointSpec, Mount, Resources, RestartPolicy, ServiceMode

from lifecycle.catalog import ModelSpec, RuntimeKind
from lifecycle.catalog.swarm_section import SwarmSettings
from lifecycle.core.events import check_model_id, redact_text
from lifecycle.core.values import Availability, ExitCallback, Handle, Observation
from lifecycle.observe.docker_events import DockerWatch
from lifecycle.runtimes import logfile
from lifecycle.runtimes.container_labels import (
    LABEL_INSTANCE,
    LABEL_MODEL,
    label_filter,
    managed_labels,
    parse_docker_time,
)
from lifecycle.runtimes.dockerhost import DockerHost
from lifecycle.runtimes.logfollow import copy_lines
from lifecycle.runtimes.protocol import AlreadyRunning, ImageMissing, RuntimeFailure, env_problem, server_env
from lifecycle.runtimes.swarm_view import (
    GPU_RESOURCE,
    LIVE_STATES,
    find_node,
    newest_task,
    node_address,
    node_memory_gb,
    node_name,
    node_problem,
    placement,
    task_error,
    task_note,
    task_observation,
    task_state,
)
from settings import Settings

log = logging.getLogger(__name__)

# After the grace period, how long a task may take to be reported down by its node.
STOP_SLACK_S: Final = 15.0
# A service without a task this young is being set up, not gone.
FIRST_TASK_S: Final = 30.0
FOLLOW_AGAIN_S: Final = 10.0
PLACE_TTL_S: Final = 30.0
REAP_WAIT_S: Final = 10.0
POLL_S: Final = 0.2
NANOS: Final = 1_000_000_000
MANAGER_KEY: Final = "manager"


def _mount(volume: Any) -> Mount:
    # A path is a bind mount on the node; a bare name is a named volume there.
    kind = "bind" if volume.source.startswith("/") else "volume"
    return Mount(target=volume.target, source=volume.source, type=kind, read_only=volume.read_only)


def service_args(
    spec: ModelSpec, settings: SwarmSettings, name: str, instance: str, constraint: str, grace_s: float
) -> dict[str, Any]:
    """Keyword arguments of ``services.create`` for a catalog entry."""
    labels = managed_labels(instance, spec.id, RuntimeKind.SWARM.value)
    resources = Resources(generic_resources={GPU_RESOURCE: settings.gpus}) if settings.gpus else None
    return {
        "image": settings.image,
        "name": name,
        "args": list(settings.command) if settings.command else None,
        "env": [f"{key}={value}" for key, value in server_env(spec).items()],
        "labels": labels,
        "container_labels": labels,
        "constraints": [constraint],
        "mode": ServiceMode("replicated", replicas=1),
        "restart_policy": RestartPolicy(condition="none"),
        "endpoint_spec": EndpointSpec(
            ports={outer: (inner, "tcp", "host") for inner, outer in settings.ports.items()}
        ),
        "mounts": [_mount(v) for v in settings.volumes],
        "resources": resources,
        "stop_grace_period": int(grace_s * NANOS),
    }


class SwarmRuntime:
    kind = RuntimeKind.SWARM.value

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.on_exit: ExitCallback | None = None
        self._hosts: dict[str | None, DockerHost] = {}
        self._watches: dict[str | None, DockerWatch] = {}
        self._followers: dict[str, threading.Thread] = {}
        self._follow_ended: dict[str, float] = {}  # service id -> when its last follower ended
        # (manager, node) -> (when asked, place, memory GiB): see memory_place
        self._places: dict[tuple[str | None, str], tuple[float, str | None, float | None]] = {}
        self._noted: set[str] = set()  # task ids whose end is in the log already
        self._lock = threading.Lock()

    def service_name(self, model_id: str) -> str:
        return f"dxg-{self.settings.instance}-{check_model_id(model_id)}"

    # --- the managers ------------------------------------------------------------------------

    def _host(self, manager: str | None) -> DockerHost:
        with self._lock:
            host = self._hosts.get(manager)
            if host is None:
                host = self._hosts[manager] = DockerHost(base_url=manager)
                watch = DockerWatch(
                    self.settings.instance,
                    self._kick,
                    filters={"type": ["service", "node"]},
                    client=host.connect,  # its own client: the watcher closes it when the stream ends
                )
                self._watches[manager] = watch
                watch.start()
            return host

    def _kick(self) -> None:
        callback = self.on_exit
        if callback is not None:
            callback("", None)

    def close(self) -> None:
        for watch in list(self._watches.values()):
            watch.close(timeout_s=1.0)

    # --- can it start? -------------------------------------------------------------------------

    def check(self, spec: ModelSpec) -> Availability:
        try:
            problem = self._problem(spec)
        except RuntimeFailure as exc:
            problem = exc
        except APIError as exc:
            refusal = exc.explanation or exc
            problem = RuntimeFailure(f"the swarm manager refused a check for {spec.id}: {refusal}")
        return Availability.ok() if problem is None else Availability.offline(str(problem))

    def _problem(self, spec: ModelSpec) -> RuntimeFailure | None:
        swarm = self._settings_of(spec)
        host = self._host(swarm.manager)
        with host.calls() as client:
            nodes, own_id = self._nodes(client, host)
            where = node_problem(swarm.node, nodes, swarm.gpus)
            if where is not None:
                return RuntimeFailure(where)
            running = self._running_problem(client, spec.id)
            if running is not None:
                return running
            node = find_node(nodes, swarm.node)
            if node is not None and node.get("ID") == own_id:
                with contextlib.suppress(NotFound):  # the manager's own images are knowable
                    client.images.get(swarm.image)
                    return env_problem(spec)
                return ImageMissing(swarm.image)
        return env_problem(spec)

    def memory_place(self, spec: ModelSpec) -> tuple[str | None, float | None]:
        """Where the model's memory is held, for admission: None for this machine (the node is
        the local engine's own), else the node; and that node's memory in GiB as its engine
        reported it, if known. Asked at most every ``PLACE_TTL_S`` per node: admission holds a
        lock, and a slow manager must not stall every load."""
        swarm = self._settings_of(spec)
        key = (swarm.manager, swarm.node)
        now = time.monotonic()
        with self._lock:
            cached = self._places.get(key)
        if cached is not None and now - cached[0] < PLACE_TTL_S:
            return cached[1], cached[2]
        place: tuple[str | None, float | None] = (swarm.node, None)
        host = self._host(swarm.manager)
        try:
            with host.calls() as client:
                nodes, own_id = self._nodes(client, host)
            node = find_node(nodes, swarm.node)
            # The manager's own node, reached over the local socket, is this machine.
            local = node is not None and node.get("ID") == own_id and host.endpoint.startswith("unix://")
        except (RuntimeFailure, APIError):
            node, local = None, False
        if node is not None:
            place = (None, None) if local else (str(node.get("ID")), node_memory_gb(node))
        with self._lock:
            self._places[key] = (now, *place)
        return place

    def _settings_of(self, spec: ModelSpec) -> SwarmSettings:
        if spec.swarm is None:
            raise RuntimeFailure(f"model {spec.id} has no swarm settings, so the app cannot start it")
        return spec.swarm

    def _nodes(self, client: DockerClient, host: DockerHost) -> tuple[list[Mapping[str, Any]], str]:
        """The swarm's nodes, and the id of the manager's own; a failure unless it is a manager."""
        swarm = client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            raise RuntimeFailure(
                f"the Docker engine at {host.endpoint} is not part of a swarm "
                f"({swarm.get('LocalNodeState') or 'inactive'}); run `docker swarm init` there, "
                "or point swarm_manager at a manager"
            )
        if not swarm.get("ControlAvailable"):
            raise RuntimeFailure(
                f"the Docker engine at {host.endpoint} is a swarm worker, not a manager; point "
                "swarm_manager (or DOCKER_HOST) at a manager, which alone can place services"
            )
        return list(client.api.nodes()), str(swarm.get("NodeID") or "")

    def _running_problem(self, client: DockerClient, model_id: str) -> AlreadyRunning | None:
        for service in self._ours(client, model_id):
            task = newest_task(service.tasks())
            if task is not None and task_state(task) in LIVE_STATES:
                return AlreadyRunning(model_id, f"swarm service {service.name}")
        return None

    def _ours(self, client: DockerClient, model_id: str | None = None) -> list[Service]:
        return list(client.services.list(filters=label_filter(self.settings.instance, self.kind, model_id)))

    # --- start ---------------------------------------------------------------------------------

    def start(self, spec: ModelSpec) -> Handle:
        problem = self._problem(spec)
        if problem is not None:
            raise problem
        swarm = self._settings_of(spec)
        name = self.service_name(spec.id)
        host = self._host(swarm.manager)
        path = self._log(spec.id)
        logfile.rotate_if_large(path)
        with host.calls() as client:
            node = find_node(self._nodes(client, host)[0], swarm.node)
            if node is None:  # gone since the check
                raise RuntimeFailure(f"swarm node {swarm.node} is gone")
            for previous in self._ours(client, spec.id):
                self._remove(previous, spec.id, "the previous service")
            constraint = placement(swarm.node, node)
            self._note(spec.id, self._describe(spec, swarm, name, node, constraint))
            grace = self.settings.stop_grace_s
            args = service_args(spec, swarm, name, self.settings.instance, constraint, grace)
            try:
                service = client.services.create(**args)
            except APIError as exc:
                message = f"the swarm manager could not create service {name}: {exc.explanation or exc}"
                self._note(spec.id, message)
                raise RuntimeFailure(message) from exc
            service.reload()
            self._follow(host, service.id or "", spec.id)
            return self._handle(service, swarm.manager, node)

    def _describe(
        self, spec: ModelSpec, swarm: SwarmSettings, name: str, node: Mapping[str, Any], constraint: str
    ) -> str:
        ports = ", ".join(f"{outer}->{inner} (host mode)" for inner, outer in swarm.ports.items()) or "none"
        parts = [
            f"image {swarm.image} as swarm service {name}",
            f"on node {node_name(node)} at {node_address(node)} ({constraint})",
            f"ports {ports}",
        ]
        if swarm.gpus:
            parts.append(f"{swarm.gpus} {GPU_RESOURCE}")
        parts.append(f"catalog env: {', '.join(sorted(spec.env)) or 'none'}")
        parts.append(f"instance {self.settings.instance}")
        return f"starting {spec.id}: " + "; ".join(parts)

    # --- observe -------------------------------------------------------------------------------

    def inspect(self, handle: Handle) -> Observation:
        host = self._host(handle.extra.get(MANAGER_KEY) or None)
        with host.calls() as client:
            try:
                service = client.services.get(handle.ref)
            except NotFound:
                return Observation(running=False, started_at=handle.started_at, missing=True)
            task = newest_task(service.tasks())
            nodes = {str(n.get("ID")): n for n in client.api.nodes()}
        if task is None:
            created = parse_docker_time(service.attrs.get("CreatedAt")) or handle.started_at
            if time.time() - created < FIRST_TASK_S:
                # Swarm makes the task a moment after the service: not there yet is not gone.
                return Observation(running=True, started_at=created)
        elif task_state(task) in LIVE_STATES:
            self._check_node(task, nodes)
            if task_state(task) == "pending":
                self._note_once(handle.model_id, task, f"{task_note(task, nodes)} (waiting for a node)")
            self._follow(host, handle.ref, handle.model_id)
        else:
            self._note_end(handle.model_id, task, nodes)
        return task_observation(task, handle.started_at)

    @staticmethod
    def _check_node(task: Mapping[str, Any], nodes: Mapping[str, Any]) -> None:
        """A live task on a node the manager can't reach is unknown, not running and not gone:
        the reconciler must not act on a guess. Swarm gives the task up (desired state shutdown)
        and stops it when the node returns, which then reads as an exit."""
        node_id = str(task.get("NodeID") or "")
        if not node_id:
            return  # not placed yet
        node = nodes.get(node_id)
        if node is None:
            raise RuntimeFailure(f"the swarm node {node_id[:12]} its task ran on has left the swarm")
        state = str((node.get("Status") or {}).get("State") or "unknown")
        if state != "ready":
            given_up = (
                "; Swarm has given its task up" if task.get("DesiredState") in ("shutdown", "remove") else ""
            )
            raise RuntimeFailure(f"swarm node {node_name(node)} at {node_address(node)} is {state}{given_up}")

    def _note_once(self, model_id: str, task: Mapping[str, Any], text: str) -> bool:
        key = f"{task.get('ID')}:{task_state(task)}"
        with self._lock:
            if key in self._noted:
                return False
            self._noted.add(key)
        self._note(model_id, text)
        return True

    def _note_end(self, model_id: str, task: Mapping[str, Any], nodes: Mapping[str, Any]) -> None:
        if not self._note_once(model_id, task, task_note(task, nodes)):
            return
        error = task_error(task)
        if "No such image" in error:
            image = str(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image") or "")
            missing = ImageMissing(image.split("@", 1)[0])
            self._note(model_id, f"{missing} (on the node the task went to)")

    def find_managed(self) -> list[Handle]:
        """This instance's services on every manager the catalog has used so far, and DOCKER_HOST's."""
        found: list[Handle] = []
        managers = {None, *self._hosts}
        for manager in managers:
            try:
                found += self._managed_on(manager)
            except (RuntimeFailure, APIError) as exc:  # one manager away must not hide the others
                log.warning(
                    "cannot list this instance's swarm services on %s: %s", manager or "DOCKER_HOST", exc
                )
        return found

    def _managed_on(self, manager: str | None) -> list[Handle]:
        host = self._host(manager)
        with host.calls() as client:
            swarm = client.info().get("Swarm") or {}
            if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
                return []
            nodes = {str(n.get("ID")): n for n in client.api.nodes()}
            found = []
            for service in self._ours(client):
                task = newest_task(service.tasks())
                node = nodes.get(str((task or {}).get("NodeID") or ""))
                found.append(self._handle(service, manager, node))
        return found

    def logs(self, handle: Handle | None, model_id: str, tail: int) -> str:
        return redact_text(logfile.tail(self._log(model_id), tail))

    # --- stop ----------------------------------------------------------------------------------

    def stop(self, handle: Handle, grace_s: float) -> Observation:
        host = self._host(handle.extra.get(MANAGER_KEY) or None)
        with host.calls() as client:
            try:
                service = client.services.get(handle.ref)
            except NotFound:
                gone = f"{handle.model_id}: swarm service {handle.ref[:12]} is already gone"
                self._note(handle.model_id, gone)
                return Observation(running=False, started_at=handle.started_at, missing=True)
            self._note(
                handle.model_id,
                f"stopping {handle.model_id} (swarm service {service.name}): scaled to 0, "
                f"stop signal, SIGKILL after {self.settings.stop_grace_s:g}s",
            )
            service.scale(0)
            deadline = time.monotonic() + grace_s + STOP_SLACK_S
            task = seen = newest_task(service.tasks())
            while task is not None and task_state(task) in LIVE_STATES and time.monotonic() < deadline:
                time.sleep(POLL_S)
                task = newest_task(service.tasks())
                seen = task or seen
            if task is not None or seen is None:
                observed = task_observation(task, handle.started_at)
            else:  # Swarm's task reaper removed the ended task before we read its exit code
                self._note(handle.model_id, f"{handle.model_id}: its task ended; Swarm kept no exit code")
                observed = Observation(running=False, started_at=handle.started_at)
            self._remove(service, handle.model_id, "its service")
        self._note(handle.model_id, f"stopped {handle.model_id} (exit code {observed.exit_code})")
        return observed

    def _remove(self, service: Service, model_id: str, what: str) -> None:
        """Remove a service whose task has ended (its last lines are in the log already)."""
        retire(service)
        self._note(model_id, f"removed {what} {service.name}")

    # --- logs ----------------------------------------------------------------------------------

    def _follow(self, host: DockerHost, service_id: str, model_id: str) -> None:
        with self._lock:
            thread = self._followers.get(service_id)
            if thread is not None and thread.is_alive():
                return
            # A stream that ends at once (a logging driver Docker can't read back) would be
            # followed again on every pass, and its end would wake the next one.
            if time.monotonic() - self._follow_ended.get(service_id, -FOLLOW_AGAIN_S) < FOLLOW_AGAIN_S:
                return
            thread = threading.Thread(
                target=self._copy, args=(host, service_id, model_id), name=f"logs-{model_id}", daemon=True
            )
            self._followers[service_id] = thread
        thread.start()

    def _copy(self, host: DockerHost, service_id: str, model_id: str) -> None:
        """``docker service logs --follow`` into logs/{id}.log, redacted line by line."""
        path = self._log(model_id)
        since = self._resume_point(path)
        try:
            with host.calls() as client, logfile.open_append(path) as out:
                chunks = client.api.service_logs(
                    service_id, follow=True, stdout=True, stderr=True, since=since, is_tty=False
                )
                copy_lines(chunks, out, path)
        except (NotFound, RuntimeFailure, APIError):
            pass  # removed, or the manager went away: inspect() follows again
        except Exception:
            log.exception("following the logs of swarm service %s (%s) failed", model_id, service_id[:12])
        finally:
            with self._lock:
                self._follow_ended[service_id] = time.monotonic()
                self._followers.pop(service_id, None)
            self._kick()

    @staticmethod
    def _resume_point(path: Path) -> int:
        try:
            return int(path.stat().st_mtime)
        except FileNotFoundError:
            return 0

    # --- helpers -------------------------------------------------------------------------------

    def _handle(self, service: Service, manager: str | None, node: Mapping[str, Any] | None) -> Handle:
        labels = (service.attrs.get("Spec") or {}).get("Labels") or {}
        created = parse_docker_time(service.attrs.get("CreatedAt"))
        extra = {
            "name": service.name or "",
            "instance": labels.get(LABEL_INSTANCE, ""),
            MANAGER_KEY: manager or "",
        }
        if node is not None:
            extra["node"] = node_name(node)
            extra["node_address"] = node_address(node)
        return Handle(
            runtime=self.kind,
            model_id=labels.get(LABEL_MODEL, ""),
            ref=service.id or "",
            started_at=created if created is not None else time.time(),
            extra=extra,
        )

    def _log(self, model_id: str) -> Path:
        return logfile.log_path(self.settings.log_dir, model_id)

    def _note(self, model_id: str, text: str) -> None:
        with contextlib.suppress(OSError):
            logfile.write_note(self._log(model_id), text)


def retire(service: Service, reap_wait_s: float = REAP_WAIT_S) -> None:
    """Remove a service, but not while Swarm's task reaper may be deleting its tasks.

    Removing a service whose task disappears at that moment makes the manager's dockerd panic
    (swarmkit 20.10, SetServiceTasksRemove reads the deleted task: a nil pointer), and every
    service and container on that engine goes down with it. So the service goes to 0 replicas,
    which has the reaper delete its ended tasks, and is removed once none is left (or after
    ``reap_wait_s``, when a task is stuck on a node that is away).
    """
    with contextlib.suppress(NotFound):
        service.reload()  # its version: an update from a stale one is refused as out of sequence
        if (service.attrs.get("Spec") or {}).get("Mode", {}).get("Replicated", {}).get("Replicas") != 0:
            service.scale(0)
        deadline = time.monotonic() + reap_wait_s
        while service.tasks() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        service.remove()
