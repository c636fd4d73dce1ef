"""The swarm runtime on a real two-node swarm (tests/swarm_bed.py): node 1 is this machine's
engine (the manager), node 2 a second dockerd in its own network namespace at 10.231.7.2."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from docker import DockerClient
from docker.errors import APIError, NotFound

from lifecycle.core.errors import NotEnoughMemory
from lifecycle.core.events import Crashed, LoadRequested, StartIssued, Stopped
from lifecycle.runtimes.swarm import retire
from simulator.config import DEFAULT_CRASH_EXIT_CODE
from tests import swarm_bed
from tests.app_harness import api_settings, serve
from tests.catalogs import SIM_IMAGE, write_catalog
from tests.e2e.app_process import CLEAN_EXIT, SHUTDOWN_BUDGET_S, app_files, start_app
from tests.integration.container_support import sim_args
from tests.integration.lifecycle_env import (
    LOADED_CRASHED_RESTARTED,
    make_settings,
    of_type,
    running_service,
    wait_for_types,
)
from tests.support import free_port, skip_or_fail, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

HELLO = [{"role": "user", "content": "hello"}]
MANAGER = "unix:///var/run/docker.sock"


@pytest.fixture(scope="module")
def bed(sim_image: str) -> Iterator[swarm_bed.Bed]:
    reason = swarm_bed.why_unavailable()
    if reason is not None:
        skip_or_fail("DXG_REQUIRE_SWARM", reason)
    made = swarm_bed.up(sim_image)
    try:
        yield made
    finally:
        swarm_bed.down()


@pytest.fixture
def manager(bed: swarm_bed.Bed, docker_client: DockerClient) -> Iterator[DockerClient]:
    """The manager's client; every service a test left is removed after it (the swarm is the bed's)."""
    yield docker_client
    for service in docker_client.services.list():
        retire(service)
    # What a killed node 2 left (its old task's container comes back with its dockerd) would
    # meet the next test there; the tests that remove services check node 2 themselves.
    node2 = swarm_bed.node2_client()
    for container in _containers(node2):
        with contextlib.suppress(NotFound, APIError):  # APIError: Swarm's own removal is under way
            container.remove(force=True)
    wait_until(lambda: not _containers(node2), 30, what="node 2 without containers")


def _containers(client: DockerClient) -> list[Any]:
    # Listing inspects each container: one removed meanwhile (Swarm cleaning up) is asked again.
    for _ in range(10):
        with contextlib.suppress(NotFound):
            return list(client.containers.list(all=True, filters={"label": "dxg.managed=true"}))
    return list(client.containers.list(all=True, filters={"label": "dxg.managed=true"}))


def swarm_model(model_id: str, node: str, address: str, *sim_extra: str) -> dict[str, Any]:
    port = free_port()
    return {
        "id": model_id,
        "url": f"http://{address}:{port}",
        "engine": "nim",
        "runtime": "swarm",
        "simulated": True,
        "startup_timeout_s": 60,
        "swarm": {
            "image": SIM_IMAGE,
            "node": node,
            "ports": {8000: port},
            "command": sim_args(model_id, *sim_extra),
        },
    }


def _ours(client: DockerClient, instance: str) -> list[Any]:
    return list(client.services.list(filters={"label": f"dxg.instance={instance}"}))


def test_a_model_on_node_2_loads_on_demand_through_v1_answers_and_unloads(
    tmp_path: Path, bed: swarm_bed.Bed, manager: DockerClient
) -> None:
    catalog = write_catalog(tmp_path / "models.yaml", swarm_model("sw-a", swarm_bed.NODE2, bed.node2_addr))
    settings = api_settings(tmp_path, catalog)
    with serve(settings) as client:
        user = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="x", http_client=client, max_retries=0)
        started = time.monotonic()
        answer = user.chat.completions.create(model="sw-a", messages=HELLO, max_tokens=8)  # type: ignore[arg-type]
        cold_s = time.monotonic() - started
        assert answer.choices[0].message.content
        status = client.get("/api/models/sw-a").json()
        assert status["phase"] == "ready"
        assert status["host"] == "node-2"
        services = _ours(manager, settings.instance)
        assert len(services) == 1
        task = services[0].tasks()[0]
        assert task["NodeID"] == bed.node2_id
        on_node2 = _containers(swarm_bed.node2_client())
        assert [c.labels["dxg.model"] for c in on_node2] == ["sw-a"]
        events = client.get("/api/events", params={"model": "sw-a"}).json()["events"]
        assert events[-1]["type"] == "LoadRequested"  # newest first
        assert events[-1]["actor"] == "gateway"

        unloaded = client.post("/api/models/sw-a/unload?wait=true&timeout_s=60")
        assert unloaded.status_code == 200, unloaded.text
        assert _ours(manager, settings.instance) == []
        log = (settings.log_dir / "sw-a.log").read_text()
        assert "SIM_EVENT ready" in log  # docker service logs reached logs/sw-a.log
        assert "on node node-2" in log
    print(f"\nswarm: cold load on node 2 through /v1 to first answer {cold_s:.2f}s")


def test_a_crash_on_node_2_is_recorded_with_its_exit_code_and_restarted(
    settings: Any, tmp_path: Path, bed: swarm_bed.Bed, manager: DockerClient
) -> None:
    model = swarm_model("sw-c", swarm_bed.NODE2, bed.node2_addr, "--crash-after-s", "3")
    quick = make_settings(settings, write_catalog(tmp_path / "models.yaml", model))
    with running_service(quick) as service:
        service.load("sw-c")
        wait_for_types(service, "sw-c", LOADED_CRASHED_RESTARTED, timeout_s=90)
        crash = of_type(service, "sw-c", Crashed)[0]
        assert crash.exit_code == DEFAULT_CRASH_EXIT_CODE
        assert "crashing as asked" in crash.log_tail
        first, second = of_type(service, "sw-c", StartIssued)[:2]
        assert first.handle["runtime"] == "swarm"
        assert first.handle["ref"] != second.handle["ref"]  # a new service: Swarm restarted nothing
        service.unload("sw-c")
        assert service.wait("sw-c", "stopped", timeout_s=60).phase == "stopped"
        assert of_type(service, "sw-c", Stopped)[-1].reason == "unload"
    assert _ours(manager, quick.instance) == []


def test_gpus_are_reserved_from_what_the_node_advertises(
    settings: Any, tmp_path: Path, bed: swarm_bed.Bed, manager: DockerClient
) -> None:
    one = {**swarm_model("sw-g1", swarm_bed.NODE2, bed.node2_addr)}
    one["swarm"] = {**one["swarm"], "gpus": 1}
    three = {**swarm_model("sw-g3", swarm_bed.NODE2, bed.node2_addr)}
    three["swarm"] = {**three["swarm"], "gpus": 3}
    # The manager named by the catalog's top-level swarm_manager (the bed's is this engine).
    catalog = tmp_path / "models.yaml"
    catalog.write_text(yaml.safe_dump({"swarm_manager": MANAGER, "models": [one, three]}), encoding="utf-8")
    quick = make_settings(settings, catalog)
    with running_service(quick) as service:
        too_many = service.status_of("sw-g3")
        assert not too_many.available
        assert "advertises 2 NVIDIA-GPU resources and the model reserves 3" in (too_many.reason or "")
        service.load("sw-g1")
        assert service.wait("sw-g1", "ready", timeout_s=60).phase == "ready"
        assert of_type(service, "sw-g1", StartIssued)[0].handle["extra"]["manager"] == MANAGER
        (ours,) = _ours(manager, quick.instance)
        reservations = ours.attrs["Spec"]["TaskTemplate"]["Resources"]["Reservations"]
        wanted = {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}
        assert reservations["GenericResources"] == [wanted]
        (container,) = _containers(swarm_bed.node2_client())
        given = [e for e in container.attrs["Config"]["Env"] if e.startswith("DOCKER_RESOURCE_NVIDIA-GPU=")]
        assert len(given) == 1
        assert given[0].split("=", 1)[1] in swarm_bed.NODE2_GPUS  # one of node 2's two, by name


def test_memory_is_admitted_per_node(
    settings: Any, tmp_path: Path, bed: swarm_bed.Bed, manager: DockerClient
) -> None:
    """Two 6 GB models don't fit node 2's 10 GB budget together; node 1 (this machine) has its own."""
    models = [
        {**swarm_model(model_id, node, address), "memory_gb": 6}
        for model_id, node, address in (
            ("sw-m1", swarm_bed.NODE2, bed.node2_addr),
            ("sw-m2", swarm_bed.NODE2, bed.node2_addr),
            ("sw-m3", swarm_bed.NODE1, bed.node1_addr),
        )
    ]
    per_node = make_settings(settings, write_catalog(tmp_path / "models.yaml", *models), memory_budget_gb=10)
    with running_service(per_node) as service:
        service.load("sw-m1")
        with pytest.raises(NotEnoughMemory) as refused:
            service.load("sw-m2")
        assert str(refused.value).startswith(
            "sw-m2 needs 6 GB; 4 GB free (budget 10 GB on node-2, DXG_MEMORY_BUDGET_GB (per host)); "
            "unload sw-m1"
        )
        service.load("sw-m3")  # node 1: nothing of node 2's counts here
        assert service.wait("sw-m3", "ready", timeout_s=60).phase == "ready"
        assert service.wait("sw-m1", "ready", timeout_s=60).phase == "ready"
        node2 = service.memory_at("sw-m1")
        assert node2 is not None
        assert [h.model_id for h in node2.holders] == ["sw-m1"]
        # Node 1 is the manager's own engine, this machine: its models hold this machine's memory.
        assert [h.model_id for h in service.memory().holders] == ["sw-m3"]

    reported = make_settings(settings, write_catalog(tmp_path / "models.yaml", *models))
    with running_service(reported) as service:
        budget = service.memory_at("sw-m1")
        assert budget is not None
        assert budget.budget.source.startswith("node-2's ")
        assert budget.budget.source.endswith("GB, as its runtime reports it")
        assert budget.budget.gb > 1  # node 2's engine reports this machine's memory


def test_node_2_going_down_takes_its_model_offline_and_back(
    tmp_path: Path, bed: swarm_bed.Bed, manager: DockerClient
) -> None:
    model = swarm_model("sw-n", swarm_bed.NODE2, bed.node2_addr)
    # Restarts on (the harness turns them off): the node's return may read as the task's exit.
    settings = api_settings(tmp_path, write_catalog(tmp_path / "models.yaml", model), crash_limit=5)
    with serve(settings) as client:
        loaded = client.post("/api/models/sw-n/load?wait=true&timeout_s=60")
        assert loaded.status_code == 200, loaded.text
        swarm_bed.stop_node2(signal.SIGKILL)
        try:
            offline = wait_until(
                lambda: _names_node_down(client.get("/api/models/sw-n").json()), 60, what="Offline"
            )
            assert (offline["status"], offline["loaded"], offline["available"]) == ("Offline", False, False)
            # /v1 says so at once, with the node, instead of waiting for a load that is there.
            refused = client.post("/v1/chat/completions", json={"model": "sw-n", "messages": HELLO})
            assert refused.status_code == 503
            assert refused.headers["Retry-After"]
            error = refused.json()["error"]
            assert error["code"] == "model_unreachable"
            assert "node-2" in error["message"]
            assert "Crashed" not in _types(client, "sw-n")  # unknown is not a crash: nothing acted
        finally:
            swarm_bed.start_node2()  # whatever happened, the module's other tests need node 2
        # Back with the node: its container ran on (a node's dockerd dying leaves its containers),
        # or Swarm stopped it as the node returned, which the reconciler records as a crash and
        # restarts. Either way the wanted model is loaded and answering again.
        wait_until(
            lambda: client.get("/api/models/sw-n").json()["loaded"] and _answers(model["url"]),
            120,
            what="sw-n loaded and answering again",
        )
        after = _types(client, "sw-n")
        assert after[:3] == ["LoadRequested", "StartIssued", "ReadyObserved"]
        assert after[3:] in ([], LOADED_CRASHED_RESTARTED[3:]), after
        answer = client.post("/v1/chat/completions", json={"model": "sw-n", "messages": HELLO})
        assert answer.status_code == 200, answer.text


def _types(client: Any, model_id: str) -> list[str]:
    events = client.get("/api/events", params={"model": model_id}).json()["events"]
    return [e["type"] for e in reversed(events)]  # the API answers newest first


def _names_node_down(status: dict[str, Any]) -> dict[str, Any] | None:
    reason = status["reason"] or ""
    return status if "node-2" in reason and "down" in reason else None


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_nodes_a_hard_killed_app_adopts_and_sigterm_stops_every_service(
    tmp_path: Path, bed: swarm_bed.Bed, manager: DockerClient
) -> None:
    one = swarm_model("sw-1", swarm_bed.NODE1, bed.node1_addr)
    two = swarm_model("sw-2", swarm_bed.NODE2, bed.node2_addr)
    with app_files(tmp_path, one, two) as files:
        app = start_app(files)
        app.load("sw-1")
        app.load("sw-2")
        placed = {s.name: s.tasks()[0]["NodeID"] for s in _ours(manager, files.instance)}
        assert sorted(placed.values()) == sorted([bed.node1_id, bed.node2_id])

        app.proc.kill()  # SIGKILL: no stop-all; the services run on
        app.proc.wait(10)
        assert len(_ours(manager, files.instance)) == 2
        app = start_app(files)
        wait_until(lambda: app.model("sw-2")["phase"] == "ready", 60, what="sw-2 adopted")
        wait_until(lambda: app.model("sw-1")["phase"] == "ready", 60, what="sw-1 adopted")
        assert len(_ours(manager, files.instance)) == 2  # adopted, not started twice
        for model_id in ("sw-1", "sw-2"):
            types = [e.type for e in files.events(model_id)]
            assert types.count("StartIssued") == 1, types
            assert "Adopted" in types, types

        assert app.signal(signal.SIGTERM, SHUTDOWN_BUDGET_S) in CLEAN_EXIT
        assert _ours(manager, files.instance) == []
        node2 = swarm_bed.node2_client()
        assert [c for c in _containers(node2) if c.status == "running"] == []
        wait_until(lambda: not _containers(node2), 30, what="node 2 to remove the ended task's container")
        assert [e.event for e in files.events("sw-2") if isinstance(e.event, LoadRequested)]
