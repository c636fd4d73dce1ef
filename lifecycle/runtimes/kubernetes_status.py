"""Reading what the Kubernetes API says, without calling it: pods and NIMService status into
``Observation`` values, error ``Status`` objects into failures a user can act on.

Every function takes the JSON the API server sends (plain dicts), so the rules are tested
without a cluster and the runtime (kubernetes.py) only fetches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from lifecycle.core.values import Observation
from lifecycle.runtimes.protocol import RuntimeFailure

# Waiting reasons after which the container will not start without a change by someone.
STUCK_REASONS: Final = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
_USER_RE: Final = re.compile(r'User "([^"]+)"')
NIM_OPERATOR_INSTALL: Final = (
    "helm repo add nvidia https://helm.ngc.nvidia.com/nvidia && helm repo update && "
    "helm install nim-operator nvidia/k8s-nim-operator -n nim-operator --create-namespace"
)


# --- failures ----------------------------------------------------------------------------------


class KubeconfigMissing(RuntimeFailure):
    def __init__(self, context: str | None, detail: str) -> None:
        self.context = context
        which = f"context {context!r}" if context else "a current context"
        super().__init__(
            f"no usable Kubernetes configuration with {which}: {detail}. Put a kubeconfig at "
            "~/.kube/config or point KUBECONFIG at one (`kubectl config get-contexts` lists its "
            "contexts), or run the app inside the cluster with a service account"
        )


class ClusterUnreachable(RuntimeFailure):
    def __init__(self, host: str, context: str | None, detail: str) -> None:
        self.host = host
        where = f" (kubeconfig context {context})" if context else ""
        super().__init__(
            f"the Kubernetes API server at {host}{where} is not reachable: {detail}. Check that the "
            "cluster is up and that the kubeconfig points at it (`kubectl cluster-info`)"
        )


class NimOperatorMissing(RuntimeFailure):
    def __init__(self) -> None:
        super().__init__(
            "the NIM Operator is not installed in the cluster: its NIMService resource "
            "(apps.nvidia.com/v1alpha1) is unknown; install it: "
            f"`{NIM_OPERATOR_INSTALL}` (it needs the GPU Operator), or use workload: deployment"
        )


class AccessDenied(RuntimeFailure):
    def __init__(self, verb: str, resource: str, namespace: str, user: str | None) -> None:
        self.verb = verb
        self.resource = resource
        self.namespace = namespace
        self.user = user
        who = f"service account or user {user}" if user else "the app's credentials"
        super().__init__(
            f"Kubernetes refused to let {who} {verb} {resource} in namespace {namespace} (403 Forbidden); "
            f"grant it with a Role and RoleBinding in {namespace} (docs/kubernetes.md lists the rules the "
            f"app needs; check with `kubectl auth can-i {verb} {resource} -n {namespace}`)"
        )


class Unauthorized(RuntimeFailure):
    def __init__(self, context: str | None) -> None:
        which = f" of kubeconfig context {context}" if context else ""
        super().__init__(
            f"the Kubernetes API server refused the credentials{which} (401 Unauthorized); they may have "
            "expired: log in again or refresh the kubeconfig, then try again"
        )


class NamespaceMissing(RuntimeFailure):
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        super().__init__(
            f"namespace {namespace} does not exist; create it (`kubectl create namespace {namespace}`) "
            "or fix kubernetes.namespace"
        )


class SecretMissing(RuntimeFailure):
    def __init__(self, name: str, namespace: str, keys: list[str]) -> None:
        self.name = name
        literals = " ".join(f"--from-literal={key}=<value>" for key in keys) or "--from-literal=KEY=<value>"
        super().__init__(
            f"Secret {name} (kubernetes.auth_secret) does not exist in namespace {namespace}; create it: "
            f"`kubectl create secret generic {name} {literals} -n {namespace}`"
        )


class SecretKeysMissing(RuntimeFailure):
    def __init__(self, name: str, namespace: str, keys: list[str]) -> None:
        self.keys = keys
        super().__init__(
            f"Secret {name} in namespace {namespace} has no key {', '.join(keys)}, which the model needs; "
            f"add {'them' if len(keys) > 1 else 'it'} (`kubectl edit secret {name} -n {namespace}`) or "
            "recreate the Secret with every key"
        )


class NameTaken(RuntimeFailure):
    def __init__(self, kind: str, name: str, namespace: str) -> None:
        super().__init__(
            f"a {kind} named {name} already exists in namespace {namespace} and is not this app's "
            "(its dxg.io/instance label differs or is missing); the app never takes over what it did not "
            "create: delete or rename it, or use another namespace"
        )


class ClusterRejected(RuntimeFailure):
    def __init__(self, verb: str, resource: str, namespace: str, code: int, message: str) -> None:
        self.code = code
        super().__init__(
            f"Kubernetes refused to {verb} {resource} in namespace {namespace} ({code}): {message}"
        )


# --- error Status objects ----------------------------------------------------------------------


@dataclass(frozen=True)
class ApiStatus:
    """The parts of a ``Status`` object (kind: Status) the wording needs."""

    code: int
    reason: str
    message: str
    details: Mapping[str, Any]

    @classmethod
    def parse(cls, code: int, body: str | bytes | None) -> ApiStatus:
        try:
            data = json.loads(body or "{}")
        except (TypeError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        return cls(
            code=int(data.get("code") or code),
            reason=str(data.get("reason") or ""),
            message=str(data.get("message") or (body.decode() if isinstance(body, bytes) else body) or ""),
            details=data.get("details") or {},
        )

    @property
    def object_missing(self) -> bool:
        """A 404 about a named object; without a name the resource type itself is unknown."""
        return self.code == 404 and bool(self.details.get("name"))

    @property
    def user(self) -> str | None:
        match = _USER_RE.search(self.message)
        return match.group(1) if match else None


def describe_failure(
    status: ApiStatus, verb: str, resource: str, namespace: str, context: str | None
) -> RuntimeFailure:
    """The failure for an error answer to ``verb`` on ``resource`` in ``namespace``."""
    if status.code == 401:
        return Unauthorized(context)
    if status.code == 403:
        return AccessDenied(verb, resource, namespace, status.user)
    if status.code == 404 and status.details.get("kind") == "namespaces":
        return NamespaceMissing(str(status.details.get("name") or namespace))
    if status.code == 404 and resource.endswith("apps.nvidia.com") and not status.object_missing:
        return NimOperatorMissing()
    return ClusterRejected(verb, resource, namespace, status.code, status.message or status.reason)


# --- objects into observations -----------------------------------------------------------------


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def live_pods(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Pods not on their way out: a terminating pod of the last stop says nothing of this start."""
    return [pod for pod in pods if not (pod.get("metadata") or {}).get("deletionTimestamp")]


def restart_baseline(pods: Iterable[Mapping[str, Any]]) -> str:
    """``pod=restarts,...`` of the live pods now: restarts up to here are not this handle's crashes."""
    counts = {_pod_name(pod): _restarts(pod) for pod in live_pods(pods)}
    return ",".join(f"{name}={count}" for name, count in sorted(counts.items()))


def parse_baseline(text: str) -> dict[str, int]:
    baseline: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        name, _, count = item.partition("=")
        if count.isdigit():
            baseline[name] = int(count)
    return baseline


@dataclass(frozen=True)
class PodReading:
    """One reading of a workload's pods: the observation and, when worth a log line, why."""

    observation: Observation
    note: str | None = None
    # A container is up: only then can the cluster's readiness be worth asking about.
    serving: bool = False


def read_pods(
    pods: Iterable[Mapping[str, Any]], baseline: Mapping[str, int], started_at: float
) -> PodReading:
    """Running, crashed (a restart since the handle began, CrashLoopBackOff, a terminated
    container) or stuck (an image that cannot be pulled, a Secret that is missing)."""
    pending_note: str | None = None
    start_times: list[float] = []
    for pod in live_pods(pods):
        name = _pod_name(pod)
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            crash = _crash(name, container, baseline.get(name, 0), started_at)
            if crash is not None:
                return crash
            running = (container.get("state") or {}).get("running")
            if running:
                start_times.append(parse_time(running.get("startedAt")) or started_at)
        if status.get("phase") == "Failed":
            message = status.get("message") or status.get("reason") or "no reason given"
            return PodReading(
                Observation(running=False, started_at=started_at), f"pod {name} failed: {message}"
            )
        pending_note = pending_note or _pending_note(name, status)
    first = min(start_times) if start_times else started_at
    return PodReading(Observation(running=True, started_at=first), pending_note, serving=bool(start_times))


def _crash(pod: str, container: Mapping[str, Any], baseline: int, started_at: float) -> PodReading | None:
    state = container.get("state") or {}
    last = (container.get("lastState") or {}).get("terminated") or {}
    terminated = state.get("terminated") or {}
    waiting = state.get("waiting") or {}
    restarts = int(container.get("restartCount") or 0)
    since = restarts - baseline
    if terminated or since > 0 or waiting.get("reason") == "CrashLoopBackOff":
        ended = terminated or last
        code = ended.get("exitCode")
        exit_code = int(code) if code is not None else None
        oom = ended.get("reason") == "OOMKilled"
        how = f"exit code {exit_code}" + (", OOM-killed" if oom else "")
        note = f"pod {pod}: container {container.get('name')} crashed ({how}); restarts: {restarts}"
        if waiting.get("reason"):
            note += f"; now {waiting['reason']}"
        return PodReading(
            Observation(running=False, exit_code=exit_code, oom_killed=oom, started_at=started_at), note
        )
    if waiting.get("reason") in STUCK_REASONS:
        message = waiting.get("message") or "no message"
        return PodReading(
            Observation(running=False, started_at=started_at),
            f"pod {pod} cannot start its container: {waiting['reason']}: {message}",
        )
    return None


def _pending_note(pod: str, status: Mapping[str, Any]) -> str | None:
    """Why a pod waits (no node with a free GPU, a pull in progress), for the log."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"pod {pod} is not scheduled yet: {condition.get('message') or condition.get('reason')}"
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return f"pod {pod} is waiting: {waiting['reason']}"
    return None


def nim_state(obj: Mapping[str, Any]) -> tuple[str, str]:
    """A NIMService's ``status.state`` (Pending, NotReady, Ready, Failed) and the message of its
    latest condition, for the log."""
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    message = ""
    for condition in conditions:
        if condition.get("status") == "True" and condition.get("message"):
            message = str(condition["message"])
    return str(status.get("state") or "Pending"), message


def ready_endpoints(slices: Iterable[Mapping[str, Any]]) -> int:
    """Ready addresses behind a Service, from its EndpointSlices (discovery.k8s.io/v1)."""
    count = 0
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or []:
            # An absent ready condition means ready, as the API reference says.
            if (endpoint.get("conditions") or {}).get("ready", True):
                count += len(endpoint.get("addresses") or [])
    return count


def replicas_of(obj: Mapping[str, Any]) -> int:
    return int((obj.get("spec") or {}).get("replicas") or 0)


def _pod_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name") or "")


def _restarts(pod: Mapping[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((int(c.get("restartCount") or 0) for c in statuses), default=0)
