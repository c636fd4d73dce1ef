"""runtime: swarm -- a model as a Docker Swarm service of 0 or 1 replicas on a chosen node.

The app talks to one manager (``manager``, else the catalog's ``swarm_manager``, else
DOCKER_HOST) and pins the service to ``node``: the value of a node's ``dxg.host`` label, or a
node id. Ports are published in host mode, so the model answers at its node's own address:
the entry's ``url`` names that address and a published port.
"""

from __future__ import annotations

import re
from typing import Final

from pydantic import Field, field_validator

from lifecycle.catalog.sections import ContainerFields, Text

# The node label a catalog's ``node`` names (``docker node update --label-add dxg.host=spark-2``).
NODE_LABEL: Final = "dxg.host"
# What a docker endpoint may look like: a socket, or tcp/ssh to a manager.
_ENDPOINT_RE: Final = re.compile(r"^(unix|tcp|ssh|npipe)://\S+$")
_NODE_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_endpoint(value: str | None) -> str | None:
    if value is not None and not _ENDPOINT_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Docker endpoint; write it like unix:///var/run/docker.sock "
            "or tcp://10.0.0.11:2376 (the manager's engine)"
        )
    return value


class SwarmSettings(ContainerFields):
    """``swarm: {image, node, ports, gpus, volumes, command, manager}``; env is the entry's own.
    Volumes are paths on the node, not on the app's machine."""

    node: Text  # a dxg.host label value, or a node id
    # NVIDIA-GPU generic resources to reserve: the node must advertise them (dockerd's
    # node-generic-resources); None: no GPU.
    gpus: int | None = Field(default=None, ge=1)
    manager: str | None = None

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        if not _NODE_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a node name; give the node's {NODE_LABEL} label value "
                "(letters, digits, '.', '_', '-') or its node id"
            )
        return value

    @field_validator("manager")
    @classmethod
    def _manager(cls, value: str | None) -> str | None:
        return check_endpoint(value)
