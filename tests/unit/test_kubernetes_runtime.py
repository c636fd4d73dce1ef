"""``runtime: kubernetes`` against recorded API exchanges (tests/recordings/kubernetes/).

No cluster exists here: each recording is hand-written from the Kubernetes API reference and the
NIM Operator docs (its ``source`` field says so) and replayed through the official client's own
transport (tests/kubernetes_replay.py), which asserts every request the runtime makes, in order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes.client import ApiClient

from lifecycle.catalog import ModelSpec, load_catalog
from lifecycle.core.values import Handle, Observation
from lifecycle.runtimes import kubernetes_status as status
from lifecycle.runtimes.kubernetes import KubernetesRuntime
from lifecycle.runtimes.protocol import Runtime, RuntimeFailure
from settings import Settings
from tests.kubernetes_replay import Replayer, replay_client

INSTANCE = "i1test"
CATALOG = {
    "models": [
        {
            "id": "llama",
            "url": "http://llama.dxg.svc:8000",
            "engine": "llamacpp",
            "runtime": "kubernetes",
            "kubernetes": {
                "image": "ghcr.io/ggml-org/llama.cpp:server",
                "namespace": "dxg",
                "command": ["-m", "/models/m.gguf", "--host", "0.0.0.0", "--port", "8000"],
            },
        },
        {
            "id": "gpt-oss-20b",
            "url": "http://gpt-oss-20b.dxg.svc:8000",
            "engine": "nim",
            "runtime": "kubernetes",
            "kubernetes": {
                "image": "nvcr.io/nim/openai/gpt-oss-20b:1.12.0",
                "namespace": "dxg",
                "auth_secret": "ngc-api-secret",
                "pull_secret": "ngc-secret",
                "nim_cache": "gpt-oss-20b",
                "gpus": 1,
            },
        },
    ]
}


class FakeTime:
    """The runtime's clock and sleep: each sleep moves the clock on by ``step`` seconds."""

    def __init__(self, step: float = 1.0) -> None:
        self.now = 0.0
        self.step = step
        self.sleeps = 0

    def sleep(self, _seconds: float) -> None:
        self.sleeps += 1
        self.now += self.step

    def clock(self) -> float:
        return self.now


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    catalog = tmp_path / "models.yaml"
    catalog.write_text(yaml.safe_dump(CATALOG))
    return Settings(
        db_url=f"sqlite:///{tmp_path / 'dxg.db'}",
        log_dir=tmp_path / "logs",
        catalog=catalog,
        instance=INSTANCE,
        stop_grace_s=10,
    )


@pytest.fixture
def specs(settings: Settings) -> dict[str, ModelSpec]:
    return {spec.id: spec for spec in load_catalog(settings.catalog)}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def replaying(
    settings: Settings, *recordings: str, step: float = 1.0
) -> tuple[KubernetesRuntime, Replayer, FakeTime]:
    api, replayer = replay_client(*recordings)
    fake = FakeTime(step)
    runtime = KubernetesRuntime(settings, clients=lambda _context: api, sleep=fake.sleep, clock=fake.clock)
    return runtime, replayer, fake


def log_text(settings: Settings, model_id: str) -> str:
    path = settings.log_dir / f"{model_id}.log"
    return path.read_text() if path.exists() else ""


def llama_handle(restarts: str = "") -> Handle:
    extra = {
        "namespace": "dxg",
        "workload": "deployment",
        "name": "llama",
        "context": "",
        "instance": INSTANCE,
    }
    return Handle("kubernetes", "llama", "dxg/deployment/llama", 1000.0, {**extra, "restarts": restarts})


def nim_handle() -> Handle:
    extra = {
        "namespace": "dxg",
        "workload": "nimservice",
        "name": "gpt-oss-20b",
        "context": "",
        "instance": INSTANCE,
    }
    return Handle(
        "kubernetes", "gpt-oss-20b", "dxg/nimservice/gpt-oss-20b", 1000.0, {**extra, "restarts": ""}
    )


# --- no cluster at all -----------------------------------------------------------------------


def test_creating_the_runtime_contacts_nothing(settings: Settings) -> None:
    made: list[str | None] = []

    def factory(context: str | None) -> ApiClient:
        made.append(context)
        raise AssertionError("no client may be made before a check or start")

    runtime = KubernetesRuntime(settings, clients=factory)
    assert isinstance(runtime, Runtime)
    assert runtime.kind == "kubernetes"
    assert made == []


@pytest.mark.usefixtures("clean_env")
def test_a_missing_kubeconfig_is_an_offline_reason(settings: Settings, specs: dict[str, ModelSpec]) -> None:
    runtime = KubernetesRuntime(settings)
    answer = runtime.check(specs["llama"])
    assert not answer.available
    assert "no usable Kubernetes configuration with a current context" in answer.reason
    assert "~/.kube/config" in answer.reason
    assert "KUBECONFIG" in answer.reason
    with pytest.raises(status.KubeconfigMissing):
        runtime.start(specs["llama"])


def test_an_unreachable_api_server_is_an_offline_reason_and_unknown_to_inspect(
    settings: Settings, specs: dict[str, ModelSpec]
) -> None:
    runtime, replayer, _ = replaying(settings, "unreachable", "unreachable")
    answer = runtime.check(specs["llama"])
    assert not answer.available
    assert answer.reason.startswith("the Kubernetes API server at https://k8s.test:6443 is not reachable")
    assert "Connection refused" in answer.reason
    assert "kubectl cluster-info" in answer.reason
    # Unknown is not "gone": inspect raises, so the reconciler neither restarts nor forgets it.
    with pytest.raises(status.ClusterUnreachable):
        runtime.inspect(llama_handle())
    replayer.assert_done()


# --- Deployment + Service --------------------------------------------------------------------


def test_load_creates_the_service_and_the_deployment(settings: Settings, specs: dict[str, ModelSpec]) -> None:
    runtime, replayer, _ = replaying(settings, "deployment_create")
    handle = runtime.start(specs["llama"])
    replayer.assert_done()
    assert handle.runtime == "kubernetes"
    assert handle.ref == "dxg/deployment/llama"
    assert handle.extra == {
        "namespace": "dxg",
        "workload": "deployment",
        "name": "llama",
        "context": "",
        "instance": INSTANCE,
        "restarts": "",
    }
    container = replayer.requests[3]["body"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["-m", "/models/m.gguf", "--host", "0.0.0.0", "--port", "8000"]
    log = log_text(settings, "llama")
    assert "starting llama: Deployment llama in namespace dxg" in log
    assert "created Service llama (ClusterIP)" in log
    assert "created Deployment llama in namespace dxg" in log


def test_load_patches_an_unloaded_deployment_back_to_one_replica(
    settings: Settings, specs: dict[str, ModelSpec]
) -> None:
    runtime, replayer, _ = replaying(settings, "deployment_scale_up")
    handle = runtime.start(specs["llama"])
    replayer.assert_done()
    # The old pod is terminating: its restarts belong to the last run, not to this handle.
    assert handle.extra["restarts"] == ""
    assert "updated Deployment llama in namespace dxg: replicas 0 -> 1" in log_text(settings, "llama")


def test_status_polling_reports_running_and_notes_the_clusters_ready_once(settings: Settings) -> None:
    runtime, replayer, _ = replaying(settings, "deployment_status")
    handle = llama_handle()
    seen = [runtime.inspect(handle) for _ in range(3)]
    replayer.assert_done()
    assert all(o.running and o.exit_code is None for o in seen)
    assert seen[0].started_at == status.parse_time("2025-06-02T09:00:03Z")
    log = log_text(settings, "llama")
    assert log.count("Service llama has 1 ready endpoint: the cluster calls it ready") == 1


def test_a_pod_waiting_for_a_gpu_is_still_starting_and_says_why(settings: Settings) -> None:
    runtime, replayer, _ = replaying(settings, "deployment_unschedulable")
    seen = runtime.inspect(llama_handle())
    replayer.assert_done()
    assert seen.running
    assert "not scheduled yet: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu" in log_text(
        settings, "llama"
    )


def test_a_crash_looping_pod_is_a_crash_with_its_exit_code_and_log(settings: Settings) -> None:
    runtime, replayer, _ = replaying(settings, "deployment_crashloop")
    handle = llama_handle()
    seen = runtime.inspect(handle)
    assert seen == Observation(running=False, exit_code=1, oom_killed=False, started_at=1000.0)
    tail = runtime.logs(handle, "llama", 20)
    replayer.assert_done()
    assert "container server crashed (exit code 1); restarts: 3; now CrashLoopBackOff" in tail
    assert "--- pod llama-7c9f8d6b5d-x2k4p (previous container) ---" in tail
    assert "failed to open GGUF file '/models/m.gguf'" in tail


def test_a_restart_by_the_kubelet_is_still_a_crash_to_the_reconciler(settings: Settings) -> None:
    runtime, replayer, _ = replaying(settings, "deployment_oom")
    seen = runtime.inspect(llama_handle())
    replayer.assert_done()
    assert seen == Observation(running=False, exit_code=137, oom_killed=True, started_at=1000.0)
    assert "crashed (exit code 137, OOM-killed); restarts: 1" in log_text(settings, "llama")


def test_unload_scales_to_zero_and_waits_for_the_pod(settings: Settings) -> None:
    runtime, replayer, fake = replaying(settings, "deployment_stop")
    seen = runtime.stop(llama_handle(), grace_s=10)
    replayer.assert_done()
    assert seen == Observation(running=False, started_at=1000.0)
    assert fake.sleeps == 2
    log = log_text(settings, "llama")
    assert "scaling Deployment llama to 0" in log
    assert "stopped llama (Deployment llama at 0 replicas)" in log


def test_a_pod_outliving_the_grace_period_is_deleted_at_once(settings: Settings) -> None:
    runtime, replayer, _ = replaying(settings, "deployment_stop_stuck", step=10)
    runtime.stop(llama_handle(), grace_s=0)
    replayer.assert_done()
    assert "pod llama-7c9f8d6b5d-x2k4p outlived the grace period: deleted at once" in log_text(
        settings, "llama"
    )


def test_stopping_a_deleted_deployment_reports_it_missing(settings: Settings) -> None:
    runtime, replayer, _ = replaying(settings, "deployment_stop_gone")
    seen = runtime.stop(llama_handle(), grace_s=10)
    replayer.assert_done()
    assert seen.missing
    assert not seen.running


def test_a_foreign_object_of_the_same_name_is_never_taken_over(
    settings: Settings, specs: dict[str, ModelSpec]
) -> None:
    runtime, replayer, _ = replaying(settings, "name_taken")
    answer = runtime.check(specs["llama"])
    replayer.assert_done()
    assert answer.reason.startswith(
        "a Deployment named llama already exists in namespace dxg and is not this app's"
    )


def test_a_missing_namespace_is_named(settings: Settings, specs: dict[str, ModelSpec]) -> None:
    runtime, replayer, _ = replaying(settings, "namespace_missing")
    with pytest.raises(
        status.NamespaceMissing, match=r"namespace dxg does not exist; create it \(`kubectl create"
    ):
        runtime.start(specs["llama"])
    replayer.assert_done()
    assert "could not start llama: namespace dxg does not exist" in log_text(settings, "llama")


# --- RBAC ------------------------------------------------------------------------------------


def test_a_forbidden_read_names_verb_resource_namespace_and_service_account(
    settings: Settings, specs: dict[str, ModelSpec]
) -> None:
    runtime, replayer, _ = replaying(settings, "rbac_forbidden_get")
    answer = runtime.check(specs["llama"])
    replayer.assert_done()
    assert not answer.available
    assert answer.reason.startswith(
        "Kubernetes refused to let service account or user system:serviceaccount:dxg:dxg-app get "
        "deployments.apps in namespace dxg (403 Forbidden)"
    )
    assert "kubectl auth can-i get deployments.apps -n dxg" in answer.reason


def test_a_forbidden_create_fails_the_load_with_the_verb(
    settings: Settings, specs: dict[str, ModelSpec]
) -> None:
    runtime, replayer, _ = replaying(settings, "rbac_forbidden_create")
    with pytest.raises(status.AccessDenied) as failure:
        runtime.start(specs["llama"])
    replayer.assert_done()
    assert (failure.value.verb, failure.value.resource, failure.value.namespace) == (
        "create",
        "services",
        "dxg",
    )
    assert failure.value.user == "system:serviceaccount:dxg:dxg-app"


def test_a_forbidden_secret_read_is_named(settings: Settings, specs: dict[str, ModelSpec]) -> None:
    runtime, replayer, _ = replaying(settings, "rbac_forbidden_secret")
    answer = runtime.check(specs["gpt-oss-20b"])
    replayer.assert_done()
    assert "get secrets in namespace dxg (403 Forbidden)" in answer.reason


# --- NIMService ------------------------------------------------------------------------------


def test_a_nim_is_available_and_loads_as_a_nimservice(
    settings: Settings, specs: dict[str, ModelSpec]
) -> None:
    runtime, replayer, _ = replaying(settings, "nimservice_create")
    assert runtime.check(specs["gpt-oss-20b"]).available
    handle = runtime.start(specs["gpt-oss-20b"])
    replayer.assert_done()
    assert handle.ref == "dxg/nimservice/gpt-oss-20b"
    assert handle.extra["workload"] == "nimservice"
    assert "created NIMService gpt-oss-20b in namespace dxg" in log_text(settings, "gpt-oss-20b")


def test_nimservice_status_polling_notes_ready_once(settings: Settings) -> None:
    runtime, replayer, _ = replaying(settings, "nimservice_status")
    seen = [runtime.inspect(nim_handle()) for _ in range(2)]
    replayer.assert_done()
    assert all(o.running for o in seen)
    assert log_text(settings, "gpt-oss-20b").count("NIMService gpt-oss-20b reports state Ready") == 1


def test_a_missing_nim_operator_is_a_clear_offline_reason(
    settings: Settings, specs: dict[str, ModelSpec]
) -> None:
    runtime, replayer, _ = replaying(settings, "nimservice_crd_missing")
    answer = runtime.check(specs["gpt-oss-20b"])
    replayer.assert_done()
    assert not answer.available
    assert answer.reason.startswith(
        "the NIM Operator is not installed in the cluster: its NIMService resource "
        "(apps.nvidia.com/v1alpha1) is unknown; install it: `helm repo add nvidia"
    )
    assert "helm install nim-operator nvidia/k8s-nim-operator" in answer.reason


def test_a_missing_auth_secret_or_key_is_named(settings: Settings, specs: dict[str, ModelSpec]) -> None:
    runtime, replayer, _ = replaying(settings, "nimservice_secret_missing")
    first = runtime.check(specs["gpt-oss-20b"])
    second = runtime.check(specs["gpt-oss-20b"])
    replayer.assert_done()
    assert first.reason.startswith(
        "Secret ngc-api-secret (kubernetes.auth_secret) does not exist in namespace dxg; create it: "
        "`kubectl create secret generic ngc-api-secret --from-literal=NGC_API_KEY=<value> -n dxg`"
    )
    assert second.reason.startswith("Secret ngc-api-secret in namespace dxg has no key NGC_API_KEY")


def test_unloading_a_nim_sets_replicas_to_zero(settings: Settings) -> None:
    runtime, replayer, _ = replaying(settings, "nimservice_stop")
    seen = runtime.stop(nim_handle(), grace_s=10)
    replayer.assert_done()
    assert not seen.running
    assert not seen.missing


def test_a_crd_refusing_zero_replicas_makes_unload_delete_the_nimservice(settings: Settings) -> None:
    runtime, replayer, _ = replaying(settings, "nimservice_stop_rejected")
    runtime.stop(nim_handle(), grace_s=10)
    replayer.assert_done()
    assert "NIMService gpt-oss-20b cannot scale to 0" in log_text(settings, "gpt-oss-20b")


# --- adoption --------------------------------------------------------------------------------


def test_adoption_finds_this_instances_running_workloads_by_label(settings: Settings) -> None:
    runtime, replayer, _ = replaying(settings, "adoption")
    handles = runtime.find_managed()
    assert [(h.model_id, h.ref) for h in handles] == [
        ("llama", "dxg/deployment/llama"),
        ("gpt-oss-20b", "dxg/nimservice/gpt-oss-20b"),
    ]
    llama = handles[0]
    assert llama.extra["restarts"] == "llama-7c9f8d6b5d-x2k4p=2"
    assert llama.started_at == status.parse_time("2025-06-02T09:00:00Z")
    # Two restarts before the app came back are history, not a crash of the adopted server.
    assert runtime.inspect(llama).running
    replayer.assert_done()


def test_adoption_without_the_nim_operator_still_finds_deployments(settings: Settings) -> None:
    runtime, replayer, _ = replaying(settings, "adoption_no_operator")
    assert runtime.find_managed() == []
    replayer.assert_done()


def test_adoption_with_no_reachable_cluster_raises(settings: Settings) -> None:
    def factory(_context: str | None) -> ApiClient:
        raise FileNotFoundError("no kubeconfig")

    with pytest.raises(RuntimeFailure, match="no usable Kubernetes configuration"):
        KubernetesRuntime(settings, clients=factory).find_managed()
