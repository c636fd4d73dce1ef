"""Models run in a Kubernetes cluster (``runtime: kubernetes``), through the official client.

A NIM becomes a ``NIMService`` of the NVIDIA NIM Operator; llama.cpp and vLLM become a
``Deployment`` plus a ``Service`` (kubernetes_manifests.py builds them). Load creates the
workload or patches it to ``replicas: 1``; unload scales it to 0 and waits for its pods to go,
deleting them outright once the grace period is over. Workloads stay in the cluster between
loads, so a second load is a scale-up, not a new install.

Ownership and adoption go through labels: every object carries ``dxg.io/managed``,
``dxg.io/instance``, ``dxg.io/model``, ``dxg.io/runtime`` and ``dxg.io/workload``.
``find_managed`` lists this instance's workloads with replicas >= 1 in the namespaces the
catalog names, so stop-all on exit and adoption after a hard kill work as for containers. An
object of the same name without this instance's labels is never touched.

Crashes, and the one choice the protocol leaves open: a Deployment's pods always restart
(``restartPolicy: Always`` is the only one allowed), so Kubernetes is a second supervisor. The
reconciler stays the one that counts: ``inspect`` reports ``Observation(running=False,
exit_code=lastState.terminated.exitCode, oom_killed=...)`` as soon as a container restarted
since the handle began, or sits in CrashLoopBackOff, or cannot start (image pull failure, a
missing Secret). The reconciler then records the crash with its exit code, scales to 0 and
applies its own backoff and crash limit. "Since the handle began" is exact because the handle
carries each pod's restart count at start or adoption (``extra["restarts"]``), so old
restarts of an adopted pod are not counted again. The restart count itself goes into the
model's log as a note, not into the Observation, which has no field for it.

Readiness: the app's own HTTP probe of the catalog url decides "ready". The cluster's view
(NIMService ``status.state`` or ready EndpointSlice addresses of the Service) is noted in the
log once, so a model the cluster calls ready but the app cannot reach points at a wrong url.

Nothing is contacted when the runtime is created: the kubeconfig (or in-cluster service
account) is read at the first check or start, and its absence is an Offline reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import urllib3
from kubernetes import client, config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from lifecycle.catalog import ModelSpec, RuntimeKind, load_catalog
from lifecycle.catalog.kubernetes_section import KubernetesSettings
from lifecycle.core.events import redact_text
from lifecycle.core.values import Availability, Handle, Observation
from lifecycle.runtimes import kubernetes_manifests as manifests
from lifecycle.runtimes import kubernetes_status as status
from lifecycle.runtimes import logfile
from lifecycle.runtimes.kubernetes_manifests import DEPLOYMENT, NIMSERVICE, Workload
from lifecycle.runtimes.protocol import RuntimeFailure, server_env
from settings import Settings

log = logging.getLogger(__name__)

ClientFactory = Callable[[str | None], ApiClient]
# (connect, read) seconds: a dead API server must not hold up a reconciler tick.
REQUEST_TIMEOUT: Final = (5.0, 20.0)
POLL_S: Final = 1.0
# Beyond the grace period, for the kubelet to report the pod gone before it is deleted outright.
STOP_MARGIN_S: Final = 5.0
MERGE_PATCH: Final = "application/merge-patch+json"
# Resources as RBAC names them, for messages.
NIM_RESOURCE: Final = f"{manifests.NIM_PLURAL}.{manifests.NIM_GROUP}"
DEPLOYMENT_RESOURCE: Final = "deployments.apps"
_SERVICE_ACCOUNT_TOKEN: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def kube_client(context: str | None) -> ApiClient:
    """A client for ``context`` from the kubeconfig, or the pod's service account in a cluster."""
    configuration = client.Configuration()
    if context is None and os.environ.get("KUBERNETES_SERVICE_HOST") and _SERVICE_ACCOUNT_TOKEN.exists():
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(context=context, client_configuration=configuration, persist_config=False)
    # One retry, not urllib3's three: an unreachable server should become a reason quickly.
    configuration.retries = 1
    return ApiClient(configuration)


@dataclass(frozen=True)
class Target:
    """Where a model's workload lives: enough to find it again from a handle alone."""

    context: str | None
    namespace: str
    workload: Workload
    name: str
    model_id: str

    @classmethod
    def of(cls, spec: ModelSpec) -> Target:
        settings = _settings(spec)
        return cls(
            settings.context,
            settings.namespace,
            manifests.workload_kind(spec),
            manifests.resource_name(spec.id),
            spec.id,
        )

    @classmethod
    def of_handle(cls, handle: Handle) -> Target:
        extra = handle.extra
        workload: Workload = NIMSERVICE if extra.get("workload") == NIMSERVICE else DEPLOYMENT
        return cls(
            extra.get("context") or None,
            extra.get("namespace", "default"),
            workload,
            extra.get("name") or manifests.resource_name(handle.model_id),
            handle.model_id,
        )

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.workload}/{self.name}"

    @property
    def kind(self) -> str:
        return "NIMService" if self.workload == NIMSERVICE else "Deployment"


class Cluster:
    """The API calls of one context, each turning a refusal into a failure a user can act on."""

    def __init__(self, api: ApiClient, context: str | None) -> None:
        self.api = api
        self.context = context
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.discovery = client.DiscoveryV1Api(api)

    def call(
        self, verb: str, resource: str, namespace: str, method: Callable[..., Any], *args: Any, **kw: Any
    ) -> Any:
        try:
            result = method(*args, _request_timeout=REQUEST_TIMEOUT, **kw)
        except ApiException as exc:
            if exc.status == 0 or exc.status is None:
                raise self._unreachable(exc.reason or str(exc)) from exc
            parsed = status.ApiStatus.parse(int(exc.status), exc.body)
            if parsed.object_missing and verb in ("get", "patch", "delete"):
                raise _ObjectMissing() from exc
            raise status.describe_failure(parsed, verb, resource, namespace, self.context) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(str(getattr(exc, "reason", None) or exc)) from exc
        except ValueError as exc:  # the client's models refused a request's or an answer's shape
            raise RuntimeFailure(
                f"the Kubernetes client could not {verb} {resource} in namespace {namespace}: "
                f"a request or answer did not fit the API's types: {exc}"
            ) from exc
        return self.api.sanitize_for_serialization(result) if result is not None else None

    def get(self, resource: str, namespace: str, method: Callable[..., Any], *args: Any) -> Any:
        """The object, or None when it does not exist."""
        try:
            return self.call("get", resource, namespace, method, *args)
        except _ObjectMissing:
            return None

    def _unreachable(self, detail: str) -> status.ClusterUnreachable:
        return status.ClusterUnreachable(self.api.configuration.host, self.context, detail)

    # --- workloads ---------------------------------------------------------------------------

    def _nim(self, verb: str, method: Callable[..., Any], namespace: str, *rest: Any, **kw: Any) -> Any:
        """A call on a namespace's NIMServices: the custom-objects API wants group, version, plural."""
        where = (manifests.NIM_GROUP, manifests.NIM_VERSION, namespace, manifests.NIM_PLURAL)
        return self.call(verb, NIM_RESOURCE, namespace, method, *where, *rest, **kw)

    def _deployments(
        self, verb: str, method: Callable[..., Any], namespace: str, *args: Any, **kw: Any
    ) -> Any:
        return self.call(verb, DEPLOYMENT_RESOURCE, namespace, method, *args, **kw)

    def read_workload(self, target: Target) -> dict[str, Any] | None:
        """The workload, or None when it does not exist."""
        try:
            if target.workload == NIMSERVICE:
                return self._nim(
                    "get", self.custom.get_namespaced_custom_object, target.namespace, target.name
                )
            return self._deployments(
                "get", self.apps.read_namespaced_deployment, target.namespace, target.name, target.namespace
            )
        except _ObjectMissing:
            return None

    def create_workload(self, target: Target, body: dict[str, Any]) -> None:
        if target.workload == NIMSERVICE:
            self._nim("create", self.custom.create_namespaced_custom_object, target.namespace, body)
        else:
            self._deployments(
                "create", self.apps.create_namespaced_deployment, target.namespace, target.namespace, body
            )

    def patch_workload(self, target: Target, body: dict[str, Any]) -> None:
        # A merge patch replaces lists whole, so env or args removed from the catalog go away too.
        if target.workload == NIMSERVICE:
            self._nim(
                "patch", self.custom.patch_namespaced_custom_object, target.namespace, target.name, body
            )
        else:
            patch = self.apps.patch_namespaced_deployment
            self._deployments(
                "patch",
                patch,
                target.namespace,
                target.name,
                target.namespace,
                body,
                _content_type=MERGE_PATCH,
            )

    def scale(self, target: Target, replicas: int) -> None:
        body = manifests.replicas_patch(replicas)
        if target.workload == NIMSERVICE:
            self.patch_workload(target, body)
        else:
            scale = self.apps.patch_namespaced_deployment_scale
            self.call(
                "patch",
                "deployments.apps/scale",
                target.namespace,
                scale,
                target.name,
                target.namespace,
                body,
            )

    def delete_workload(self, target: Target) -> None:
        self._nim("delete", self.custom.delete_namespaced_custom_object, target.namespace, target.name)

    def list_workloads(self, namespace: str, workload: Workload, selector: str) -> list[dict[str, Any]]:
        if workload == NIMSERVICE:
            answer = self._nim(
                "list", self.custom.list_namespaced_custom_object, namespace, label_selector=selector
            )
        else:
            listing = self.apps.list_namespaced_deployment
            answer = self._deployments("list", listing, namespace, namespace, label_selector=selector)
        return list((answer or {}).get("items") or [])

    # --- the rest ----------------------------------------------------------------------------

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        answer = self.call(
            "list", "pods", namespace, self.core.list_namespaced_pod, namespace, label_selector=selector
        )
        return list((answer or {}).get("items") or [])

    def read_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get("services", namespace, self.core.read_namespaced_service, name, namespace)

    def secret_keys(self, namespace: str, name: str) -> list[str] | None:
        """The keys a Secret holds, or None when it does not exist; its values are dropped here."""
        secret = self.get("secrets", namespace, self.core.read_namespaced_secret, name, namespace)
        if secret is None:
            return None
        return sorted({**(secret.get("data") or {}), **(secret.get("stringData") or {})})

    def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        answer = self.call(
            "list",
            "endpointslices.discovery.k8s.io",
            namespace,
            self.discovery.list_namespaced_endpoint_slice,
            namespace,
            label_selector=f"kubernetes.io/service-name={service}",
        )
        return list((answer or {}).get("items") or [])

    def pod_log(self, namespace: str, pod: str, tail: int, previous: bool) -> str:
        text = self.call(
            "get",
            "pods/log",
            namespace,
            self.core.read_namespaced_pod_log,
            pod,
            namespace,
            tail_lines=tail,
            previous=previous,
        )
        return str(text or "")


class _ObjectMissing(Exception):
    """A 404 about a named object (not about its type): the caller decides what that means."""


class KubernetesRuntime:
    kind = RuntimeKind.KUBERNETES.value

    def __init__(
        self,
        settings: Settings,
        clients: ClientFactory | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._make_client = clients or kube_client
        self._sleep = sleep
        self._clock = clock
        self._clusters: dict[str | None, Cluster] = {}
        self._lock = threading.Lock()
        # (context, namespace) pairs this run has used: searched for leftovers besides the catalog's.
        self._places: set[tuple[str | None, str]] = set()
        self._last_note: dict[str, str] = {}
        self._seen_ready: set[str] = set()

    @property
    def instance(self) -> str:
        return self.settings.instance

    # --- can it start? -------------------------------------------------------------------------

    def check(self, spec: ModelSpec) -> Availability:
        try:
            problem = self._problem(spec)
        except RuntimeFailure as exc:
            problem = exc
        return Availability.ok() if problem is None else Availability.offline(str(problem))

    def _problem(self, spec: ModelSpec) -> RuntimeFailure | None:
        static = _static_problem(spec)
        if static is not None:
            return static
        target = Target.of(spec)
        cluster = self._cluster(target.context)
        existing = cluster.read_workload(target)
        if existing is not None and not manifests.owned_by(existing, self.instance):
            return status.NameTaken(target.kind, target.name, target.namespace)
        return self._secret_problem(cluster, spec)

    def _secret_problem(self, cluster: Cluster, spec: ModelSpec) -> RuntimeFailure | None:
        settings = _settings(spec)
        needed = manifests.required_secret_keys(spec)
        if settings.auth_secret is None:
            return None
        keys = cluster.secret_keys(settings.namespace, settings.auth_secret)
        if keys is None:
            return status.SecretMissing(settings.auth_secret, settings.namespace, needed)
        missing = [key for key in needed if key not in keys]
        return (
            status.SecretKeysMissing(settings.auth_secret, settings.namespace, missing) if missing else None
        )

    # --- start ---------------------------------------------------------------------------------

    def start(self, spec: ModelSpec) -> Handle:
        static = _static_problem(spec)
        if static is not None:
            raise static
        target = Target.of(spec)
        # Only to have the app's own secret values masked in pod log tails: none goes to the cluster.
        server_env(spec)
        self._start_log(spec, target)
        cluster = self._cluster(target.context)
        try:
            existing = cluster.read_workload(target)
            if existing is not None and not manifests.owned_by(existing, self.instance):
                raise status.NameTaken(target.kind, target.name, target.namespace)
            problem = self._secret_problem(cluster, spec)
            if problem is not None:
                raise problem
            if target.workload == DEPLOYMENT:
                self._apply_service(cluster, spec, target)
                body = manifests.deployment_manifest(spec, self.instance, self.settings.stop_grace_s)
            else:
                body = manifests.nimservice_manifest(spec, self.instance)
            if existing is None:
                cluster.create_workload(target, body)
                self._note(spec.id, f"created {target.kind} {target.name} in namespace {target.namespace}")
            else:
                cluster.patch_workload(target, body)
                was = status.replicas_of(existing)
                self._note(
                    spec.id,
                    f"updated {target.kind} {target.name} in namespace {target.namespace}: "
                    f"replicas {was} -> 1",
                )
            pods = cluster.pods(target.namespace, self._pod_selector(target))
        except _ObjectMissing as exc:
            failure = RuntimeFailure(
                f"{target.kind} {target.name} in namespace {target.namespace} was deleted while the app "
                "was loading it; load it again"
            )
            self._note(spec.id, f"could not start {spec.id}: {failure}")
            raise failure from exc
        except RuntimeFailure as exc:
            self._note(spec.id, f"could not start {spec.id}: {exc}")
            raise
        self._seen_ready.discard(target.ref)
        self._last_note.pop(spec.id, None)
        return self._handle(target, time.time(), status.restart_baseline(pods))

    def _apply_service(self, cluster: Cluster, spec: ModelSpec, target: Target) -> None:
        body = manifests.service_manifest(spec, self.instance)
        where = (target.name, target.namespace)
        existing = cluster.read_service(target.namespace, target.name)
        if existing is None:
            cluster.call(
                "create",
                "services",
                target.namespace,
                cluster.core.create_namespaced_service,
                *where[1:],
                body,
            )
            self._note(spec.id, f"created Service {target.name} ({_settings(spec).service_type})")
        elif not manifests.owned_by(existing, self.instance):
            raise status.NameTaken("Service", target.name, target.namespace)
        else:
            patch = cluster.core.patch_namespaced_service
            cluster.call(
                "patch", "services", target.namespace, patch, *where, body, _content_type=MERGE_PATCH
            )

    def _start_log(self, spec: ModelSpec, target: Target) -> None:
        path = self._log(spec.id)
        logfile.rotate_if_large(path)
        settings = _settings(spec)
        parts = [
            f"{target.kind} {target.name} in namespace {target.namespace}",
            f"context {settings.context or '(current)'}",
            f"image {settings.image}",
            f"gpus {settings.gpus or 'none'}",
            f"service {settings.service_type} port {settings.port}"
            + (f" node port {settings.node_port}" if settings.node_port else ""),
            f"catalog env: {', '.join(sorted(spec.env)) or 'none'}",
            f"secrets from: {settings.auth_secret or 'none'}",
            f"instance {self.instance}",
        ]
        logfile.write_note(path, f"starting {spec.id}: " + "; ".join(parts))

    # --- observe -------------------------------------------------------------------------------

    def inspect(self, handle: Handle) -> Observation:
        target = Target.of_handle(handle)
        self._places.add((target.context, target.namespace))
        cluster = self._cluster(target.context)
        workload = cluster.read_workload(target)
        if workload is None:
            return Observation(running=False, started_at=handle.started_at, missing=True)
        if status.replicas_of(workload) == 0:
            self._note_once(handle.model_id, f"{target.kind} {target.name} is scaled to 0 (by someone else?)")
            return Observation(running=False, started_at=handle.started_at)
        if target.workload == NIMSERVICE:
            state, message = status.nim_state(workload)
            if state == "Failed":
                self._note_once(
                    handle.model_id, f"NIMService {target.name} failed: {message or 'no message'}"
                )
        pods = cluster.pods(target.namespace, self._pod_selector(target))
        reading = status.read_pods(
            pods, status.parse_baseline(handle.extra.get("restarts", "")), handle.started_at
        )
        if reading.note:
            self._note_once(handle.model_id, reading.note)
        if reading.serving and target.ref not in self._seen_ready:
            self._note_cluster_ready(cluster, target, workload)
        return reading.observation

    def _note_cluster_ready(self, cluster: Cluster, target: Target, workload: dict[str, Any]) -> None:
        if target.workload == NIMSERVICE:
            state, _ = status.nim_state(workload)
            ready = state == "Ready"
            what = f"NIMService {target.name} reports state Ready"
        else:
            count = status.ready_endpoints(cluster.endpoint_slices(target.namespace, target.name))
            ready = count > 0
            what = f"Service {target.name} has {count} ready endpoint{'s' if count != 1 else ''}"
        if ready:
            self._seen_ready.add(target.ref)
            self._note(
                target.model_id, f"{what}: the cluster calls it ready (the app probes the catalog url)"
            )

    def cluster_ready(self, handle: Handle) -> bool:
        """The cluster's own word on readiness (NIMService state, ready Service endpoints)."""
        target = Target.of_handle(handle)
        cluster = self._cluster(target.context)
        if target.workload == NIMSERVICE:
            workload = cluster.read_workload(target)
            return workload is not None and status.nim_state(workload)[0] == "Ready"
        return status.ready_endpoints(cluster.endpoint_slices(target.namespace, target.name)) > 0

    def find_managed(self) -> list[Handle]:
        """This instance's workloads with replicas >= 1, in every namespace the catalog names."""
        handles: list[Handle] = []
        failures: list[str] = []
        places = self._catalog_places() | self._places
        for context, namespace in sorted(places, key=lambda p: (p[0] or "", p[1])):
            try:
                handles += self._managed_in(context, namespace)
            except RuntimeFailure as exc:
                failures.append(str(exc))
                log.warning("cannot look for leftover kubernetes workloads in %s: %s", namespace, exc)
        if failures and not handles and len(failures) == len(places):
            raise RuntimeFailure("; ".join(failures))
        return handles

    def _managed_in(self, context: str | None, namespace: str) -> list[Handle]:
        cluster = self._cluster(context)
        found: list[Handle] = []
        for workload in (DEPLOYMENT, NIMSERVICE):
            try:
                items = cluster.list_workloads(
                    namespace, workload, manifests.owner_selector(self.instance, workload)
                )
            except status.NimOperatorMissing:
                continue  # no operator, so no NIMService of ours either
            for item in items:
                if status.replicas_of(item) < 1:
                    continue
                metadata = item.get("metadata") or {}
                model_id = (metadata.get("annotations") or {}).get(manifests.ANNOTATION_MODEL_ID) or (
                    metadata.get("labels") or {}
                ).get(manifests.LABEL_MODEL, "")
                target = Target(context, namespace, workload, str(metadata.get("name") or ""), model_id)
                pods = cluster.pods(namespace, self._pod_selector(target))
                started = status.parse_time(metadata.get("creationTimestamp")) or time.time()
                found.append(self._handle(target, started, status.restart_baseline(pods)))
        return found

    def _catalog_places(self) -> set[tuple[str | None, str]]:
        # A hard-killed app's next run looks where its catalog says models live; unreadable: none.
        try:
            catalog = load_catalog(self.settings.catalog)
        except Exception as exc:  # the catalog's own loader reports its problems elsewhere
            log.info("kubernetes adoption cannot read the catalog: %s", exc)
            return set()
        return {
            (spec.kubernetes.context, spec.kubernetes.namespace)
            for spec in catalog
            if spec.runtime is RuntimeKind.KUBERNETES and spec.kubernetes is not None
        }

    # --- stop ----------------------------------------------------------------------------------

    def stop(self, handle: Handle, grace_s: float) -> Observation:
        """Scale to 0, wait ``grace_s`` (plus a margin) for the pods to go, then delete the rest."""
        target = Target.of_handle(handle)
        cluster = self._cluster(target.context)
        self._note(handle.model_id, f"stopping {handle.model_id}: scaling {target.kind} {target.name} to 0")
        try:
            self._scale_down(cluster, target)
        except _ObjectMissing:
            self._note(handle.model_id, f"{target.kind} {target.name} is already gone")
            return Observation(running=False, started_at=handle.started_at, missing=True)
        selector = self._pod_selector(target)
        deadline = self._clock() + max(0.0, grace_s) + STOP_MARGIN_S
        pods = cluster.pods(target.namespace, selector)
        while pods and self._clock() < deadline:
            self._sleep(POLL_S)
            pods = cluster.pods(target.namespace, selector)
        for pod in pods:
            name = str((pod.get("metadata") or {}).get("name") or "")
            with contextlib.suppress(_ObjectMissing):
                cluster.call(
                    "delete",
                    "pods",
                    target.namespace,
                    cluster.core.delete_namespaced_pod,
                    name,
                    target.namespace,
                    grace_period_seconds=0,
                )
            self._note(handle.model_id, f"pod {name} outlived the grace period: deleted at once")
        self._note(handle.model_id, f"stopped {handle.model_id} ({target.kind} {target.name} at 0 replicas)")
        self._seen_ready.discard(target.ref)
        return Observation(running=False, started_at=handle.started_at)

    def _scale_down(self, cluster: Cluster, target: Target) -> None:
        try:
            cluster.scale(target, 0)
        except status.ClusterRejected as exc:
            if target.workload != NIMSERVICE or exc.code != 422:
                raise
            # Some NIM Operator releases declare replicas >= 1; then unloading deletes the
            # NIMService (the NIMCache keeps the model, so the next load is quick).
            self._note(
                target.model_id, f"NIMService {target.name} cannot scale to 0 ({exc}); deleting it instead"
            )
            cluster.delete_workload(target)

    # --- logs ----------------------------------------------------------------------------------

    def logs(self, handle: Handle | None, model_id: str, tail: int) -> str:
        """Our notes, then the tail of the pod's output (its previous run after a crash)."""
        notes = logfile.tail(self._log(model_id), tail)
        if handle is None or tail <= 0:
            return redact_text(notes)
        try:
            pod_text = self._pod_log(handle, tail)
        except RuntimeFailure as exc:
            pod_text = f"(pod log not available: {exc})"
        lines = [*notes.splitlines(), *pod_text.splitlines()] if pod_text else notes.splitlines()
        return redact_text("\n".join(lines[-tail:]))

    def _pod_log(self, handle: Handle, tail: int) -> str:
        target = Target.of_handle(handle)
        cluster = self._cluster(target.context)
        pods = status.live_pods(cluster.pods(target.namespace, self._pod_selector(target)))
        if not pods:
            return ""
        pod = pods[0]
        name = str((pod.get("metadata") or {}).get("name") or "")
        containers = (pod.get("status") or {}).get("containerStatuses") or []
        # After a crash the current container is new or waiting; the crash is in the previous one.
        previous = any(
            int(c.get("restartCount") or 0) > 0 and not (c.get("state") or {}).get("running")
            for c in containers
        )
        text = cluster.pod_log(target.namespace, name, tail, previous)
        label = f"--- pod {name}{' (previous container)' if previous else ''} ---"
        return f"{label}\n{text.rstrip()}" if text.strip() else ""

    # --- helpers -------------------------------------------------------------------------------

    def _cluster(self, context: str | None) -> Cluster:
        with self._lock:
            cluster = self._clusters.get(context)
            if cluster is not None:
                return cluster
            try:
                api = self._make_client(context)
            except (ConfigException, OSError, ValueError) as exc:
                # Not kept: the kubeconfig may appear, or the context be added, before the next check.
                raise status.KubeconfigMissing(context, str(exc)) from exc
            cluster = Cluster(api, context)
            self._clusters[context] = cluster
            return cluster

    def _pod_selector(self, target: Target) -> str:
        return manifests.pod_selector(self.instance, target.model_id, target.workload, target.name)

    def _handle(self, target: Target, started_at: float, baseline: str) -> Handle:
        self._places.add((target.context, target.namespace))
        return Handle(
            runtime=self.kind,
            model_id=target.model_id,
            ref=target.ref,
            started_at=started_at,
            extra={
                "namespace": target.namespace,
                "workload": target.workload,
                "name": target.name,
                "context": target.context or "",
                "instance": self.instance,
                "restarts": baseline,
            },
        )

    def _log(self, model_id: str) -> Path:
        return logfile.log_path(self.settings.log_dir, model_id)

    def _note(self, model_id: str, text: str) -> None:
        with contextlib.suppress(OSError):
            logfile.write_note(self._log(model_id), text)

    def _note_once(self, model_id: str, text: str) -> None:
        """A note for a state seen on every tick: written when it changes, not each time."""
        if self._last_note.get(model_id) != text:
            self._last_note[model_id] = text
            self._note(model_id, text)


def _settings(spec: ModelSpec) -> KubernetesSettings:
    if spec.kubernetes is None:
        raise RuntimeFailure(f"model {spec.id} has no kubernetes settings, so the app cannot start it")
    return spec.kubernetes


def _static_problem(spec: ModelSpec) -> RuntimeFailure | None:
    """What is wrong with the entry itself, before any call to the cluster."""
    if spec.kubernetes is None:
        return RuntimeFailure(f"model {spec.id} has no kubernetes settings, so the app cannot start it")
    problems = manifests.manifest_problems(spec)
    return RuntimeFailure("; ".join(problems)) if problems else None
