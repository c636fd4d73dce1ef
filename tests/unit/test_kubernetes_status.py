"""Reading pods, NIMService status and error Status objects: the pure half of the kubernetes runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lifecycle.core.values import Observation
from lifecycle.runtimes import kubernetes_status as status
from lifecycle.runtimes.kubernetes import KubernetesRuntime
from lifecycle.runtimes.registry import Runtimes
from settings import Settings


def pod(
    name: str = "p1", *, restarts: int = 0, state: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    container = {
        "name": "server",
        "restartCount": restarts,
        "state": state or {"running": {"startedAt": "2025-06-02T09:00:03Z"}},
        "lastState": extra.pop("last", {}),
    }
    pod_status = {"phase": extra.pop("phase", "Running"), "containerStatuses": [container]}
    metadata: dict[str, Any] = {"name": name}
    if extra.pop("deleting", False):
        metadata["deletionTimestamp"] = "2025-06-02T10:00:00Z"
    return {"metadata": metadata, "status": {**pod_status, **extra}}


def test_no_pod_yet_is_still_starting() -> None:
    reading = status.read_pods([], {}, 5.0)
    assert reading.observation == Observation(running=True, started_at=5.0)
    assert not reading.serving


def test_a_terminated_container_is_a_crash_with_its_code() -> None:
    terminated = {"terminated": {"exitCode": 2, "reason": "Error"}}
    reading = status.read_pods([pod(state=terminated)], {}, 5.0)
    assert reading.observation == Observation(running=False, exit_code=2, started_at=5.0)


def test_restarts_up_to_the_baseline_are_not_crashes() -> None:
    last = {"terminated": {"exitCode": 1, "reason": "Error"}}
    assert status.read_pods([pod(restarts=2, last=last)], {"p1": 2}, 0).observation.running
    assert not status.read_pods([pod(restarts=3, last=last)], {"p1": 2}, 0).observation.running
    # Another pod (rescheduled) starts from zero.
    assert not status.read_pods([pod("p2", restarts=1, last=last)], {"p1": 2}, 0).observation.running


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError"])
def test_a_container_that_cannot_start_is_not_running_and_says_why(reason: str) -> None:
    waiting = {"waiting": {"reason": reason, "message": 'secret "ngc-api-secret" not found'}}
    reading = status.read_pods([pod(state=waiting)], {}, 0)
    assert reading.observation == Observation(running=False, started_at=0)
    assert reading.note == f'pod p1 cannot start its container: {reason}: secret "ngc-api-secret" not found'


def test_a_failed_pod_is_not_running() -> None:
    reading = status.read_pods(
        [pod(phase="Failed", state={"waiting": {}}, message="The node was low on memory.")], {}, 0
    )
    assert not reading.observation.running
    assert reading.note == "pod p1 failed: The node was low on memory."


def test_terminating_pods_are_left_out_of_readings_and_baselines() -> None:
    old = pod("old", restarts=4, deleting=True, state={"terminated": {"exitCode": 143}})
    assert status.read_pods([old], {}, 0).observation.running
    assert status.restart_baseline([old, pod("new", restarts=1)]) == "new=1"
    assert status.parse_baseline("new=1,other=0,bad") == {"new": 1, "other": 0}


def test_ready_endpoints_count_ready_addresses_and_absent_means_ready() -> None:
    slices = [
        {"endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}]},
        {
            "endpoints": [
                {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                {"addresses": ["10.0.0.3"]},
            ]
        },
    ]
    assert status.ready_endpoints(slices) == 2


def test_nim_state_reads_state_and_the_true_conditions_message() -> None:
    obj = {
        "status": {
            "state": "Failed",
            "conditions": [
                {"type": "NIM_SERVICE_READY", "status": "False", "message": "waiting"},
                {"type": "NIM_SERVICE_FAILED", "status": "True", "message": "pvc not bound"},
            ],
        }
    }
    assert status.nim_state(obj) == ("Failed", "pvc not bound")
    assert status.nim_state({}) == ("Pending", "")


def _status(code: int, message: str, details: dict[str, Any] | None = None) -> status.ApiStatus:
    body = {"kind": "Status", "code": code, "message": message, "details": details or {}}
    return status.ApiStatus.parse(code, json.dumps(body))


def test_failures_by_status() -> None:
    assert isinstance(
        status.describe_failure(_status(401, "Unauthorized"), "get", "pods", "dxg", None), status.Unauthorized
    )
    unknown_nim = _status(404, "the server could not find the requested resource")
    assert isinstance(
        status.describe_failure(unknown_nim, "list", "nimservices.apps.nvidia.com", "dxg", None),
        status.NimOperatorMissing,
    )
    conflict = status.describe_failure(_status(409, "already exists"), "create", "services", "dxg", None)
    assert str(conflict) == "Kubernetes refused to create services in namespace dxg (409): already exists"
    assert _status(404, "x", {"name": "llama"}).object_missing
    assert not unknown_nim.object_missing
    assert status.ApiStatus.parse(502, b"Bad Gateway").message == "Bad Gateway"


def test_the_registry_builds_the_kubernetes_runtime(tmp_path: Path) -> None:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'dxg.db'}", log_dir=tmp_path / "logs", instance="i1test"
    )
    assert isinstance(Runtimes(settings).get("kubernetes"), KubernetesRuntime)
