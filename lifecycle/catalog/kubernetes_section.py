"""runtime: kubernetes -- a model as a NIMService (NVIDIA NIM Operator) or a Deployment plus a
Service in a cluster; load and unload set replicas to 1 or 0.

The entry's ``url`` is where the app reaches the Service: cluster DNS
(``http://gpt-oss-20b.dxg.svc:8000``) when the app runs in the cluster, otherwise a NodePort or
an Ingress URL.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from lifecycle.catalog.sections import STRICT, Port, Text, argv_words

# RFC 1123 labels: what namespaces and secret names may be.
_DNS_LABEL_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class KubernetesSettings(BaseModel):
    """``kubernetes: {image, namespace, workload, port, gpus, auth_secret, pull_secret, nim_cache,
    command, service_type, node_port, context}``."""

    model_config = STRICT

    image: Text
    namespace: Text = "default"
    # nimservice for NIM models (the NIM Operator's CRD), deployment for llama.cpp and vLLM;
    # unset: by the entry's engine.
    workload: Literal["nimservice", "deployment"] | None = None
    port: Port = 8000  # the container's port, which the Service exposes
    gpus: int | None = Field(default=None, ge=1)  # nvidia.com/gpu limit
    # The Secret holding NGC_API_KEY (NIMService.spec.authSecret) and every secret of ``env``:
    # the app references it and never copies a secret value into a manifest.
    auth_secret: str | None = None
    # An image pull Secret (docker-registry type); nvcr.io images need one for NGC.
    pull_secret: str | None = None
    nim_cache: str | None = None  # NIMService.spec.storage.nimCache.name
    command: tuple[str, ...] | None = None
    service_type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    node_port: Port | None = None
    context: str | None = None  # the kubeconfig context; unset: the current one (or in-cluster)

    @field_validator("namespace", "auth_secret", "pull_secret", "nim_cache")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a Kubernetes name: 1-63 of a-z, 0-9 and '-', "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        return argv_words(value)

    @model_validator(mode="after")
    def _node_port_needs_node_port_service(self) -> KubernetesSettings:
        # A ClusterIP Service has no node port: the value would be dropped without a word.
        if self.node_port is not None and self.service_type != "NodePort":
            raise ValueError(
                "node_port only applies with service_type: NodePort; set that or remove node_port"
            )
        return self
