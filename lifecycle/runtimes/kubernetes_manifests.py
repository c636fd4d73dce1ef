"""The manifests ``runtime: kubernetes`` sends, built by pure functions of a catalog entry.

- NIM models become a ``NIMService`` (the NVIDIA NIM Operator's resource, apps.nvidia.com/v1alpha1);
  the operator makes its Deployment, Service and probes.
- llama.cpp, vLLM and other engines become a ``Deployment`` plus a ``Service``.

Names and labels follow Kubernetes' own syntax rules, so a valid catalog id always gives valid
objects: the workload and Service are named after the model id (so the url can be written by
hand: ``http://<id>.<namespace>.svc:<port>``), and every object carries ``dxg.io/*`` labels that
say which app instance owns it. The exact model id, which label syntax may not hold, rides in an
annotation.

Secrets never enter a manifest: every ``env`` entry that is a secret (taken from the app's
environment, or named like KEY/TOKEN/SECRET/PASSWORD) becomes a ``secretKeyRef`` into the
catalog's ``auth_secret``, which the user creates in the cluster once.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

from lifecycle.catalog import ModelSpec, RuntimeKind
from lifecycle.catalog.kubernetes_section import KubernetesSettings
from lifecycle.core import secrets
from lifecycle.core.events import check_model_id
from lifecycle.observe.probes import ready_path

Workload = Literal["nimservice", "deployment"]
NIMSERVICE: Final = "nimservice"
DEPLOYMENT: Final = "deployment"

LABEL_MANAGED: Final = "dxg.io/managed"
LABEL_INSTANCE: Final = "dxg.io/instance"
LABEL_MODEL: Final = "dxg.io/model"
LABEL_RUNTIME: Final = "dxg.io/runtime"
# NIMService labels reach the Deployment the operator makes; this tells the two apart.
LABEL_WORKLOAD: Final = "dxg.io/workload"
ANNOTATION_MODEL_ID: Final = "dxg.io/model-id"

NIM_GROUP: Final = "apps.nvidia.com"
NIM_VERSION: Final = "v1alpha1"
NIM_PLURAL: Final = "nimservices"
NIM_API_VERSION: Final = f"{NIM_GROUP}/{NIM_VERSION}"
NGC_KEY: Final = "NGC_API_KEY"
GPU_RESOURCE: Final = "nvidia.com/gpu"
CONTAINER: Final = "server"
PORT_NAME: Final = "http"

_NAME_MAX: Final = 63
_DNS1035_RE: Final = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE_RE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _digest(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def resource_name(model_id: str) -> str:
    """The workload's and Service's name: the id itself when it is a valid Service name (RFC 1035:
    a letter first, no '.' or '_'), else a cleaned-up id with a short hash that keeps it unique."""
    check_model_id(model_id)
    if _DNS1035_RE.fullmatch(model_id):
        return model_id
    cleaned = re.sub(r"[^a-z0-9-]+", "-", model_id).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = f"m-{cleaned}".rstrip("-")
    suffix = f"-{_digest(model_id, 6)}"
    return cleaned[: _NAME_MAX - len(suffix)].rstrip("-") + suffix


def label_value(text: str) -> str:
    """``text`` when Kubernetes takes it as a label value, else a stable stand-in (selectors must
    match what was written, so the mapping never changes)."""
    if len(text) <= _NAME_MAX and _LABEL_VALUE_RE.fullmatch(text):
        return text
    return f"h{_digest(text, 16)}"


def workload_kind(spec: ModelSpec) -> Workload:
    settings = _settings(spec)
    if settings.workload is not None:
        return settings.workload
    return NIMSERVICE if str(spec.engine) == "nim" else DEPLOYMENT


def managed_labels(instance: str, model_id: str, workload: Workload) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_INSTANCE: label_value(instance),
        LABEL_MODEL: label_value(model_id),
        LABEL_RUNTIME: RuntimeKind.KUBERNETES.value,
        LABEL_WORKLOAD: workload,
    }


def owner_selector(instance: str, workload: Workload) -> str:
    """The label selector of one instance's workloads of one kind, for adoption and stop-all."""
    labels = managed_labels(instance, "", workload)
    del labels[LABEL_MODEL]
    return selector_text(labels)


def pod_labels(instance: str, model_id: str) -> dict[str, str]:
    """What a Deployment's selector and its Service match: never changes for a model."""
    return {LABEL_INSTANCE: label_value(instance), LABEL_MODEL: label_value(model_id)}


def pod_selector(instance: str, model_id: str, workload: Workload, name: str) -> str:
    # The NIM Operator selects its pods with app=<NIMService name>; ours carry our own labels.
    if workload == NIMSERVICE:
        return f"app={name}"
    return selector_text(pod_labels(instance, model_id))


def selector_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def owned_by(obj: Mapping[str, Any], instance: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_MANAGED) == "true" and labels.get(LABEL_INSTANCE) == label_value(instance)


def split_image(image: str) -> tuple[str, str]:
    """``repository`` and ``tag`` as NIMService.spec.image wants them (a registry port is no tag)."""
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
        return repository, tag
    return image, "latest"


def secret_env_names(declared: Mapping[str, str | None]) -> list[str]:
    """The ``env`` entries that are secrets, by the same rule the log redaction uses."""
    return sorted(
        name
        for name, value in declared.items()
        if value is None or secrets.secret_env_values({name: value}, {name: value})
    )


def required_secret_keys(spec: ModelSpec) -> list[str]:
    """The keys ``auth_secret`` must hold for this entry."""
    keys = set(secret_env_names(spec.env))
    if workload_kind(spec) == NIMSERVICE:
        keys.add(NGC_KEY)
    return sorted(keys)


def manifest_problems(spec: ModelSpec) -> list[str]:
    """What makes the entry impossible to express in the cluster, each with what to do."""
    settings = _settings(spec)
    workload = workload_kind(spec)
    problems: list[str] = []
    example = (
        f"kubectl create secret generic ngc-api-secret --from-literal={NGC_KEY}=<your key> "
        f"-n {settings.namespace}"
    )
    if workload == NIMSERVICE and settings.auth_secret is None:
        problems.append(
            f"a NIMService needs kubernetes.auth_secret, the Secret that holds {NGC_KEY}; create it "
            f"(`{example}`) and set auth_secret: ngc-api-secret"
        )
    if workload == NIMSERVICE and settings.node_port is not None:
        problems.append(
            "kubernetes.node_port cannot be set for a NIMService: the NIM Operator makes its Service "
            "and picks the node port; remove node_port and read the port with "
            f"`kubectl get svc {resource_name(spec.id)} -n {settings.namespace}`, or use workload: deployment"
        )
    if workload == NIMSERVICE and "@" in settings.image:
        problems.append(
            f"image {settings.image} names a digest, but a NIMService takes a repository and a tag; use a tag"
        )
    secret_names = [
        name for name in secret_env_names(spec.env) if not (workload == NIMSERVICE and name == NGC_KEY)
    ]
    if secret_names and settings.auth_secret is None:
        names = ", ".join(secret_names)
        literals = " ".join(f"--from-literal={name}=<value>" for name in secret_names)
        problems.append(
            f"env {names} {'are secrets' if len(secret_names) > 1 else 'is a secret'}; the app never "
            "writes secret values into the cluster, so the pod reads them from a Secret: create one "
            f"(`kubectl create secret generic dxg-secrets {literals} -n {settings.namespace}`) and set "
            "kubernetes.auth_secret to its name"
        )
    return problems


def container_env(spec: ModelSpec, workload: Workload) -> list[dict[str, Any]]:
    """``env`` as container env: plain values in clear, secrets as references to ``auth_secret``."""
    settings = _settings(spec)
    secret_names = set(secret_env_names(spec.env))
    env: list[dict[str, Any]] = []
    for name in sorted(spec.env):
        if workload == NIMSERVICE and name == NGC_KEY:
            continue  # the operator sets it from authSecret itself
        if name in secret_names:
            ref = {"name": settings.auth_secret or "", "key": name}
            env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
        else:
            env.append({"name": name, "value": str(spec.env[name])})
    return env


def _metadata(spec: ModelSpec, instance: str, workload: Workload) -> dict[str, Any]:
    settings = _settings(spec)
    return {
        "name": resource_name(spec.id),
        "namespace": settings.namespace,
        "labels": managed_labels(instance, spec.id, workload),
        "annotations": {ANNOTATION_MODEL_ID: spec.id},
    }


def readiness_probe(spec: ModelSpec) -> dict[str, Any]:
    """The engine's own ready path, so the Service sends traffic only to a loaded model."""
    return {
        "httpGet": {"path": ready_path(spec), "port": PORT_NAME},
        "periodSeconds": 5,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }


def deployment_manifest(spec: ModelSpec, instance: str, grace_s: float, replicas: int = 1) -> dict[str, Any]:
    settings = _settings(spec)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.image,
        "ports": [{"name": PORT_NAME, "containerPort": settings.port, "protocol": "TCP"}],
        "readinessProbe": readiness_probe(spec),
        # No liveness probe: the kubelet would restart the server on its own, a second supervisor
        # beside the reconciler, which has its liveness watch and restart policy.
        # Engines share tensors between processes through /dev/shm, which is 64 MB by default.
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],  # noqa: S108 -- in the pod
    }
    if settings.command:
        container["args"] = list(settings.command)  # like docker.command: replaces the image's CMD
    env = container_env(spec, DEPLOYMENT)
    if env:
        container["env"] = env
    if settings.gpus:
        # A quantity is a string to the API client (1 and "1" mean the same to the server).
        container["resources"] = {"limits": {GPU_RESOURCE: str(settings.gpus)}}
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        "terminationGracePeriodSeconds": max(0, math.ceil(grace_s)),
    }
    if settings.pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": settings.pull_secret}]
    metadata = _metadata(spec, instance, DEPLOYMENT)
    template_labels = {**metadata["labels"], **pod_labels(instance, spec.id)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_labels(instance, spec.id)},
            # A rolling update would start the new pod while the old one still holds the GPU.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": template_labels, "annotations": dict(metadata["annotations"])},
                "spec": pod_spec,
            },
        },
    }


def service_manifest(spec: ModelSpec, instance: str) -> dict[str, Any]:
    settings = _settings(spec)
    port: dict[str, Any] = {
        "name": PORT_NAME,
        "port": settings.port,
        "targetPort": PORT_NAME,
        "protocol": "TCP",
    }
    if settings.node_port is not None:
        port["nodePort"] = settings.node_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, instance, DEPLOYMENT),
        "spec": {"type": settings.service_type, "selector": pod_labels(instance, spec.id), "ports": [port]},
    }


def nimservice_manifest(spec: ModelSpec, instance: str, replicas: int = 1) -> dict[str, Any]:
    settings = _settings(spec)
    repository, tag = split_image(settings.image)
    image: dict[str, Any] = {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}
    if settings.pull_secret:
        image["pullSecrets"] = [settings.pull_secret]
    metadata = _metadata(spec, instance, NIMSERVICE)
    body: dict[str, Any] = {
        "image": image,
        "authSecret": settings.auth_secret or "",
        "replicas": replicas,
        "expose": {"service": {"type": settings.service_type, "port": settings.port}},
        # Propagated by the operator to its Deployment and pods: adoption and ownership read them.
        "labels": dict(metadata["labels"]),
        "annotations": dict(metadata["annotations"]),
    }
    if settings.nim_cache:
        body["storage"] = {"nimCache": {"name": settings.nim_cache}}
    if settings.gpus:
        body["resources"] = {"limits": {GPU_RESOURCE: settings.gpus}}
    if settings.command:
        body["args"] = list(settings.command)
    env = container_env(spec, NIMSERVICE)
    if env:
        body["env"] = env
    return {"apiVersion": NIM_API_VERSION, "kind": "NIMService", "metadata": metadata, "spec": body}


def replicas_patch(replicas: int) -> dict[str, Any]:
    return {"spec": {"replicas": replicas}}


def _settings(spec: ModelSpec) -> KubernetesSettings:
    if spec.kubernetes is None:
        raise ValueError(f"model {spec.id} has no kubernetes settings")
    return spec.kubernetes
