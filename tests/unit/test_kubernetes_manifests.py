"""The manifests of ``runtime: kubernetes``, validated offline.

Deployment and Service are checked against the Kubernetes API's own schemas (the
``kubernetes-validate`` package, strict: an unknown field fails). A NIMService is a custom
resource with no schema in that package, so it is checked against a small JSON schema written
here from the NIM Operator's documentation ("Managing NIM Services": spec.image.repository/tag,
authSecret, storage.nimCache.name, replicas, resources.limits, expose.service.type/port) and its
NIMService CRD (apps.nvidia.com/v1alpha1; authSecret is the one required spec field).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from lifecycle.catalog import ModelSpec
from lifecycle.runtimes import kubernetes_manifests as m

K8S_VERSION = "1.33.0"
INSTANCE = "i1test"

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_ENV = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "value": {"type": "string"},
            "valueFrom": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretKeyRef": {
                        "type": "object",
                        "required": ["name", "key"],
                        "properties": {"name": {"type": "string", "minLength": 1}, "key": {"type": "string"}},
                    }
                },
            },
        },
    },
}
NIMSERVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "apps.nvidia.com/v1alpha1"},
        "kind": {"const": "NIMService"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": _STRING_MAP,
                "annotations": _STRING_MAP,
            },
        },
        "spec": {
            "type": "object",
            "required": ["authSecret", "image"],
            "additionalProperties": False,
            "properties": {
                "image": {
                    "type": "object",
                    "required": ["repository", "tag"],
                    "additionalProperties": False,
                    "properties": {
                        "repository": {"type": "string", "minLength": 1},
                        "tag": {"type": "string", "minLength": 1},
                        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                        "pullSecrets": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "authSecret": {"type": "string", "minLength": 1},
                "storage": {
                    "type": "object",
                    "properties": {
                        "nimCache": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}, "profile": {"type": "string"}},
                        }
                    },
                },
                "replicas": {"type": "integer", "minimum": 0},
                "resources": {
                    "type": "object",
                    "properties": {
                        "limits": {"type": "object", "additionalProperties": {"type": ["integer", "string"]}}
                    },
                },
                "expose": {
                    "type": "object",
                    "properties": {
                        "service": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                            },
                        }
                    },
                },
                "labels": _STRING_MAP,
                "annotations": _STRING_MAP,
                "args": {"type": "array", "items": {"type": "string"}},
                "command": {"type": "array", "items": {"type": "string"}},
                "env": _ENV,
            },
        },
    },
}


def spec(model_id: str = "llama", engine: str = "llamacpp", **kubernetes: Any) -> ModelSpec:
    env = kubernetes.pop("env", {})
    section = {"image": "ghcr.io/ggml-org/llama.cpp:server", "namespace": "dxg", **kubernetes}
    return ModelSpec.model_validate(
        {
            "id": model_id,
            "url": f"http://{model_id}.dxg.svc:8000",
            "engine": engine,
            "runtime": "kubernetes",
            "kubernetes": section,
            "env": env,
        }
    )


def nim(**kubernetes: Any) -> ModelSpec:
    section = {
        "image": "nvcr.io/nim/openai/gpt-oss-20b:1.12.0",
        "auth_secret": "ngc-api-secret",
        "pull_secret": "ngc-secret",
        "nim_cache": "gpt-oss-20b",
        "gpus": 1,
        **kubernetes,
    }
    return spec("gpt-oss-20b", "nim", **section)


def validate_k8s(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("engine", "path"),
    [("llamacpp", "/health"), ("vllm", "/health"), ("openai", "/v1/models")],
)
def test_deployment_is_a_valid_kubernetes_object_probing_the_engines_ready_path(
    engine: str, path: str
) -> None:
    model = spec(
        engine=engine,
        gpus=1,
        command=["-m", "/models/m.gguf", "--port", "8000", "--host", "0.0.0.0"],
        pull_secret="regcred",  # noqa: S106 -- a Secret's name, not a value
    )
    manifest = m.deployment_manifest(model, INSTANCE, grace_s=9.5)
    validate_k8s(manifest)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": path, "port": "http"}
    assert "livenessProbe" not in container  # the reconciler is the one supervisor
    assert container["args"][:2] == ["-m", "/models/m.gguf"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    pod = manifest["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 10
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert manifest["spec"]["strategy"] == {"type": "Recreate"}
    assert manifest["spec"]["replicas"] == 1


def test_health_path_overrides_the_engines_readiness_path() -> None:
    model = spec().model_copy(update={"health_path": "/ready"})
    container = m.deployment_manifest(model, INSTANCE, 10)["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_service_selects_the_deployments_pods_and_is_valid() -> None:
    model = spec(service_type="NodePort", node_port=30080)
    service = m.service_manifest(model, INSTANCE)
    deployment = m.deployment_manifest(model, INSTANCE, 10)
    validate_k8s(service)
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_cluster_ip_service_has_no_node_port() -> None:
    service = m.service_manifest(spec(), INSTANCE)
    validate_k8s(service)
    assert "nodePort" not in service["spec"]["ports"][0]


def test_every_object_carries_the_ownership_labels_and_the_exact_model_id() -> None:
    model = spec("qwen2.5_7b-")
    for manifest in (m.deployment_manifest(model, INSTANCE, 10), m.service_manifest(model, INSTANCE)):
        validate_k8s(manifest)
        labels = manifest["metadata"]["labels"]
        assert labels["dxg.io/managed"] == "true"
        assert labels["dxg.io/instance"] == INSTANCE
        assert labels["dxg.io/runtime"] == "kubernetes"
        assert labels["dxg.io/workload"] == "deployment"
        assert manifest["metadata"]["annotations"]["dxg.io/model-id"] == "qwen2.5_7b-"


def test_nimservice_matches_the_nim_operator_schema() -> None:
    manifest = m.nimservice_manifest(nim(command=["--max-model-len", "8192"]), INSTANCE)
    jsonschema.validate(manifest, NIMSERVICE_SCHEMA)
    body = manifest["spec"]
    assert body["image"] == {
        "repository": "nvcr.io/nim/openai/gpt-oss-20b",
        "tag": "1.12.0",
        "pullPolicy": "IfNotPresent",
        "pullSecrets": ["ngc-secret"],
    }
    assert body["authSecret"] == "ngc-api-secret"
    assert body["storage"] == {"nimCache": {"name": "gpt-oss-20b"}}
    assert body["replicas"] == 1
    assert body["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert body["expose"] == {"service": {"type": "ClusterIP", "port": 8000}}
    assert body["labels"]["dxg.io/workload"] == "nimservice"
    assert body["args"] == ["--max-model-len", "8192"]


def test_the_nimservice_schema_rejects_what_the_operator_would() -> None:
    manifest = m.nimservice_manifest(nim(), INSTANCE)
    del manifest["spec"]["authSecret"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, NIMSERVICE_SCHEMA)


def test_nim_engine_defaults_to_a_nimservice_and_workload_overrides_it() -> None:
    assert m.workload_kind(nim()) == "nimservice"
    assert m.workload_kind(nim(workload="deployment")) == "deployment"
    assert m.workload_kind(spec(engine="vllm")) == "deployment"


def test_secret_env_values_never_enter_a_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NGC_API_KEY", "nvapi-supersecretvalue")
    monkeypatch.setenv("HF_TOKEN", "hf_anothersecretvalue")
    env = {"NGC_API_KEY": None, "HF_TOKEN": None, "API_KEY": "literal-secret-123", "LOG_LEVEL": "debug"}
    deployment_spec = spec(env=env, auth_secret="dxg-secrets")  # noqa: S106 -- a name
    nim_spec = nim(env=env)
    manifests = [
        m.deployment_manifest(deployment_spec, INSTANCE, 10),
        m.nimservice_manifest(nim_spec, INSTANCE),
    ]
    for manifest in manifests:
        text = json.dumps(manifest)
        for secret in ("nvapi-supersecretvalue", "hf_anothersecretvalue", "literal-secret-123"):
            assert secret not in text
    container = manifests[0]["spec"]["template"]["spec"]["containers"][0]
    validate_k8s(manifests[0])
    assert container["env"] == [
        {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "dxg-secrets", "key": "API_KEY"}}},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "dxg-secrets", "key": "HF_TOKEN"}}},
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "NGC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "dxg-secrets", "key": "NGC_API_KEY"}}},
    ]
    # The operator injects NGC_API_KEY from authSecret itself.
    assert [e["name"] for e in manifests[1]["spec"]["env"]] == ["API_KEY", "HF_TOKEN", "LOG_LEVEL"]
    assert m.required_secret_keys(nim_spec) == ["API_KEY", "HF_TOKEN", "NGC_API_KEY"]


def test_secret_env_without_a_secret_to_hold_it_is_a_problem_naming_what_to_do() -> None:
    problems = m.manifest_problems(spec(env={"HF_TOKEN": None}))
    assert len(problems) == 1
    assert "HF_TOKEN is a secret" in problems[0]
    assert "kubectl create secret generic dxg-secrets --from-literal=HF_TOKEN=<value> -n dxg" in problems[0]
    assert "kubernetes.auth_secret" in problems[0]


def test_nimservice_problems() -> None:
    assert m.manifest_problems(nim()) == []
    missing_secret = m.manifest_problems(nim(auth_secret=None))
    assert "needs kubernetes.auth_secret" in missing_secret[0]
    assert "--from-literal=NGC_API_KEY=" in missing_secret[0]
    node_port = m.manifest_problems(nim(service_type="NodePort", node_port=30080))
    assert "node_port cannot be set for a NIMService" in node_port[0]
    digest = m.manifest_problems(nim(image="nvcr.io/nim/x@sha256:abc"))
    assert "digest" in digest[0]


@pytest.mark.parametrize(
    ("model_id", "name"),
    [("llama", "llama"), ("gpt-oss-20b", "gpt-oss-20b")],
)
def test_valid_service_names_are_kept(model_id: str, name: str) -> None:
    assert m.resource_name(model_id) == name


@pytest.mark.parametrize("model_id", ["qwen2.5_7b", "7b-model", "a" * 64, "x.", "llama-3.1-8b"])
def test_other_ids_become_valid_unique_service_names(model_id: str) -> None:
    name = m.resource_name(model_id)
    assert m._DNS1035_RE.fullmatch(name), name
    assert len(name) <= 63
    sibling = model_id[:-1] + ("b" if model_id[-1] != "b" else "c")
    assert name != m.resource_name(sibling)


def test_label_values_are_valid_and_stable() -> None:
    assert m.label_value("i1test") == "i1test"
    odd = m.label_value("ends-with-dash-")
    assert m._LABEL_VALUE_RE.fullmatch(odd)
    assert odd == m.label_value("ends-with-dash-")


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("nvcr.io/nim/openai/gpt-oss-20b:1.12.0", ("nvcr.io/nim/openai/gpt-oss-20b", "1.12.0")),
        ("registry.local:5000/nim/model", ("registry.local:5000/nim/model", "latest")),
        ("registry.local:5000/nim/model:2", ("registry.local:5000/nim/model", "2")),
    ],
)
def test_split_image(image: str, parts: tuple[str, str]) -> None:
    assert m.split_image(image) == parts


def test_selectors() -> None:
    assert m.owner_selector(INSTANCE, "deployment") == (
        "dxg.io/managed=true,dxg.io/instance=i1test,dxg.io/runtime=kubernetes,dxg.io/workload=deployment"
    )
    assert (
        m.pod_selector(INSTANCE, "llama", "deployment", "llama")
        == "dxg.io/instance=i1test,dxg.io/model=llama"
    )
    assert m.pod_selector(INSTANCE, "gpt-oss-20b", "nimservice", "gpt-oss-20b") == "app=gpt-oss-20b"
