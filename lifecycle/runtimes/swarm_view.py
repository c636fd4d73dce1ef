"""Reading what a Swarm manager says about nodes and tasks: pure functions over its JSON.

A model is a service of one replica; what the app observes of its server is the service's
newest task (state, exit code, error, node), and whether it can start is a question about
the node the catalog pins it to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from lifecycle.catalog.swarm_section import NODE_LABEL
from lifecycle.core.values import Observation
from lifecycle.runtimes.container_labels import parse_docker_time

GPU_RESOURCE: Final = "NVIDIA-GPU"
# A task in these states has, or will soon have, a container: the server "runs" as far as
# stopping it goes. The rest are ends (swarmkit's TaskState, in its order).
LIVE_STATES: Final = frozenset(
    {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}
)
NodeInfo = Mapping[str, Any]
TaskInfo = Mapping[str, Any]


def node_name(node: NodeInfo) -> str:
    """How the app names a node: its dxg.host label, else its hostname, with the short id."""
    labels = (node.get("Spec") or {}).get("Labels") or {}
    name = labels.get(NODE_LABEL) or (node.get("Description") or {}).get("Hostname") or "?"
    return f"{name} ({str(node.get('ID', ''))[:12]})"


def node_address(node: NodeInfo) -> str:
    return str((node.get("Status") or {}).get("Addr") or "")


def find_node(nodes: Iterable[NodeInfo], wanted: str) -> NodeInfo | None:
    """The node a catalog's ``node`` names: the one with that dxg.host label, else that id."""
    nodes = list(nodes)
    labelled = [n for n in nodes if ((n.get("Spec") or {}).get("Labels") or {}).get(NODE_LABEL) == wanted]
    if len(labelled) == 1:
        return labelled[0]
    by_id = [n for n in nodes if n.get("ID") == wanted]
    return by_id[0] if by_id else None


def placement(wanted: str, node: NodeInfo) -> str:
    """The constraint that pins a service: by label when the catalog names a label (a node
    replaced under the same label still takes it), by id otherwise."""
    labels = (node.get("Spec") or {}).get("Labels") or {}
    if labels.get(NODE_LABEL) == wanted:
        return f"node.labels.{NODE_LABEL}=={wanted}"
    return f"node.id=={node.get('ID')}"


def node_gpus(node: NodeInfo) -> int:
    """The NVIDIA-GPU generic resources a node advertises (dockerd's node-generic-resources)."""
    resources = ((node.get("Description") or {}).get("Resources") or {}).get("GenericResources") or []
    count = 0
    for resource in resources:
        discrete = resource.get("DiscreteResourceSpec") or {}
        named = resource.get("NamedResourceSpec") or {}
        if discrete.get("Kind") == GPU_RESOURCE:
            count += int(discrete.get("Value") or 0)
        elif named.get("Kind") == GPU_RESOURCE:
            count += 1
    return count


def node_memory_gb(node: NodeInfo) -> float | None:
    """The node's memory in GiB as its engine reported it to the manager (``docker node inspect``)."""
    memory = ((node.get("Description") or {}).get("Resources") or {}).get("MemoryBytes")
    return int(memory) / 1024**3 if memory else None


def node_problem(wanted: str, nodes: Sequence[NodeInfo], gpus: int | None) -> str | None:
    """Why a model pinned to ``wanted`` cannot start there now, or None."""
    node = find_node(nodes, wanted)
    if node is None:
        known = ", ".join(sorted(node_name(n) for n in nodes)) or "none"
        return (
            f"no swarm node is labelled {NODE_LABEL}={wanted} or has that id (nodes: {known}); "
            f"label one with `docker node update --label-add {NODE_LABEL}={wanted} <node>`"
        )
    name = node_name(node)
    status = node.get("Status") or {}
    state = str(status.get("State") or "unknown")
    if state != "ready":
        detail = f": {status['Message']}" if status.get("Message") else ""
        return f"swarm node {name} at {node_address(node) or 'an unknown address'} is {state}{detail}"
    availability = str((node.get("Spec") or {}).get("Availability") or "active")
    if availability != "active":
        return (
            f"swarm node {name} is {availability}, so nothing new is placed on it; "
            f"`docker node update --availability active {str(node.get('ID', ''))[:12]}` brings it back"
        )
    if gpus and node_gpus(node) < gpus:
        return (
            f"swarm node {name} advertises {node_gpus(node)} {GPU_RESOURCE} resources and the model "
            f"reserves {gpus}; set node-generic-resources in that node's dockerd (daemon.json) "
            "and the NVIDIA runtime, or lower swarm.gpus"
        )
    return None


def newest_task(tasks: Iterable[TaskInfo]) -> TaskInfo | None:
    return max(tasks, key=lambda t: parse_docker_time(t.get("CreatedAt")) or 0.0, default=None)


def task_state(task: TaskInfo) -> str:
    return str((task.get("Status") or {}).get("State") or "unknown")


def task_error(task: TaskInfo) -> str:
    status = task.get("Status") or {}
    return str(status.get("Err") or "")


def task_observation(task: TaskInfo | None, started_at: float | None = None) -> Observation:
    """The server as its newest task shows it; no task at all is a server gone without trace.
    ``started_at``: when the server started if the task doesn't say (the handle's time)."""
    if task is None:
        return Observation(running=False, missing=True, started_at=started_at)
    status = task.get("Status") or {}
    started = parse_docker_time(task.get("CreatedAt")) or started_at
    if task_state(task) in LIVE_STATES:
        return Observation(running=True, started_at=started)
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    return Observation(running=False, exit_code=None if code is None else int(code), started_at=started)


def task_note(task: TaskInfo, nodes: Mapping[str, NodeInfo]) -> str:
    """One line for the model's log: where the task ran and how it ended."""
    node = nodes.get(str(task.get("NodeID") or ""))
    where = f" on node {node_name(node)}" if node is not None else ""
    status = task.get("Status") or {}
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    parts = [f"task {str(task.get('ID', ''))[:12]}{where} is {task_state(task)}"]
    if code is not None:
        parts.append(f"exit code {code}")
    if status.get("Err"):
        parts.append(str(status["Err"]))
    elif status.get("Message"):
        parts.append(str(status["Message"]))
    return "; ".join(parts)
