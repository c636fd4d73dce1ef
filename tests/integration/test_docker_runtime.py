"""The docker runtime against the real engine, with the simulator image as the model server.

Specs are built exactly as the catalog would build them. Every test removes its instance's
containers afterwards (by the dxg.instance label), also when it fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from docker import DockerClient
from docker.errors import NotFound

from lifecycle.catalog import ModelSpec
from lifecycle.core.events import InvalidStream
from lifecycle.runtimes.docker import GPU_HINT, DockerRuntime, device_requests
from lifecycle.runtimes.protocol import (
    AlreadyRunning,
    EngineUnavailable,
    ImageMissing,
    PortInUse,
    Runtime,
    RuntimeFailure,
)
from lifecycle.runtimes.registry import Runtimes
from settings import Settings
from simulator.config import DEFAULT_CRASH_EXIT_CODE
from tests.integration.container_support import (
    DEAD_SOCKET,
    ExitRecorder,
    exited,
    log_text,
    remove_leftovers,
    sim_args,
    sim_event_names,
)
from tests.integration.readiness_support import wait_until_ready
from tests.support import free_port, wait_until

pytestmark = pytest.mark.docker

MiB = 2**20
SECRET = "nvapi-" + "s3cr3t" * 8


@pytest.fixture
def runtime(settings: Settings, second: Settings, docker_client: DockerClient) -> Iterator[DockerRuntime]:
    rt = DockerRuntime(settings)
    rt.on_exit = ExitRecorder()
    yield rt
    remove_leftovers(docker_client, [settings.instance, second.instance])
    rt.host.forget()


def docker_spec(model_id: str, image: str, port: int | None = None, **docker: Any) -> ModelSpec:
    port = port or free_port()
    return ModelSpec(
        id=model_id,
        url=f"http://127.0.0.1:{port}",
        engine="nim",
        runtime="docker",
        startup_timeout_s=30,
        docker={"image": image, "ports": {8000: port}, **docker},
    )


def sim_spec(model_id: str, image: str, *extra: str, **fields: Any) -> ModelSpec:
    return docker_spec(model_id, image, command=sim_args(model_id, *extra), **fields)


def recorder(runtime: DockerRuntime) -> ExitRecorder:
    assert isinstance(runtime.on_exit, ExitRecorder)
    return runtime.on_exit


# --- start, ready, stop --------------------------------------------------------------------------


def test_start_ready_stop_follows_logs(
    runtime: DockerRuntime, settings: Settings, docker_client: DockerClient, sim_image: str
) -> None:
    spec = sim_spec("sim-dock", sim_image, "--startup-s", "0.5")
    spec = spec.model_copy(update={"env": {"NGC_API_KEY": SECRET}})
    assert runtime.check(spec).available

    handle = runtime.start(spec)
    assert handle.extra["name"] == f"dxg-{settings.instance}-sim-dock"
    assert handle.model_id == "sim-dock"
    assert abs(handle.started_at - time.time()) < 30
    wait_until_ready(runtime, handle, spec, timeout_s=30)

    container = docker_client.containers.get(handle.ref)
    assert container.name == handle.extra["name"]
    assert container.labels["dxg.managed"] == "true"
    assert container.labels["dxg.instance"] == settings.instance
    assert container.labels["dxg.model"] == "sim-dock"
    host_config = container.attrs["HostConfig"]
    assert host_config["RestartPolicy"]["Name"] == "no"
    assert host_config["PortBindings"]["8000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(spec.port)}]
    # The container gets the value; our log gets only the name.
    assert f"NGC_API_KEY={SECRET}" in container.attrs["Config"]["Env"]
    observed = runtime.inspect(handle)
    assert observed.running
    assert observed.exit_code is None
    assert observed.started_at == pytest.approx(handle.started_at)

    stopped = runtime.stop(handle, grace_s=10)
    assert not stopped.running
    assert stopped.exit_code == 0  # the simulator exits 0 on SIGTERM
    assert not stopped.oom_killed
    with pytest.raises(NotFound):
        docker_client.containers.get(handle.ref)
    assert runtime.inspect(handle).missing
    wait_until(lambda: ("sim-dock", 0) in recorder(runtime).seen(), 10, what="on_exit after stop")

    text = log_text(settings, "sim-dock")
    names = sim_event_names(text)
    assert names[:3] == ["start", "listening", "ready"]
    assert names[-1] == "stopped"
    assert "starting sim-dock: image dxg-sim:local" in text
    assert "catalog env: NGC_API_KEY" in text
    assert "stopped sim-dock (exit code 0)" in text
    assert SECRET not in text


def test_server_output_is_redacted_in_the_log(
    runtime: DockerRuntime, settings: Settings, sim_image: str
) -> None:
    script = f"print('NGC_API_KEY={SECRET}'); print('Authorization: Bearer ' + 'abc' * 10)"
    spec = docker_spec("talker", sim_image, entrypoint=["python3.11", "-c", script])
    handle = runtime.start(spec)
    observed = wait_until(lambda: exited(runtime, handle), 30, what="talker exited")
    assert observed.exit_code == 0
    wait_until(lambda: "exited with code 0" in log_text(settings, "talker"), 10, what="exit noted")
    text = log_text(settings, "talker")
    assert "NGC_API_KEY=***" in text
    assert "Authorization: ***" in text
    assert SECRET not in text
    assert "abcabc" not in text


# --- crashes and OOM -----------------------------------------------------------------------------


def test_crash_is_seen_with_its_exit_code_and_the_next_start_replaces_it(
    runtime: DockerRuntime, settings: Settings, docker_client: DockerClient, sim_image: str
) -> None:
    began = time.time()
    spec = sim_spec("crasher", sim_image, "--crash-after-s", "1")
    handle = runtime.start(spec)
    observed = wait_until(lambda: exited(runtime, handle), 30, what="crash seen by inspect")
    assert observed.exit_code == DEFAULT_CRASH_EXIT_CODE
    assert not observed.oom_killed
    assert not observed.missing
    assert observed.started_at == pytest.approx(handle.started_at)
    wait_until(lambda: ("crasher", DEFAULT_CRASH_EXIT_CODE) in recorder(runtime).seen(), 10, what="on_exit")
    assert f"exited with code {DEFAULT_CRASH_EXIT_CODE}" in log_text(settings, "crasher")

    # Kept for inspection, found for adoption, and reported by Docker's own events.
    assert [h.ref for h in runtime.find_managed()] == [handle.ref]
    deaths = [e for e in runtime.exits(since=began) if e.action == "die"]
    assert [(e.model_id, e.container_id, e.exit_code) for e in deaths] == [
        ("crasher", handle.ref, DEFAULT_CRASH_EXIT_CODE)
    ]

    again = runtime.start(sim_spec("crasher", sim_image, port=spec.port))
    assert again.ref != handle.ref
    with pytest.raises(NotFound):
        docker_client.containers.get(handle.ref)
    assert runtime.inspect(handle).missing
    assert "removed the previous container" in log_text(settings, "crasher")


def test_oom_kill_is_reported(runtime: DockerRuntime, docker_client: DockerClient, sim_image: str) -> None:
    began = time.time()
    hog = ["python3.11", "-c", "b = bytearray(512 * 2**20)"]
    spec = docker_spec("hog", sim_image, entrypoint=hog, mem_limit="64m")
    handle = runtime.start(spec)
    host_config = docker_client.containers.get(handle.ref).attrs["HostConfig"]
    # Swap equal to memory: no swap, so the kernel has to kill instead of paging.
    assert (host_config["Memory"], host_config["MemorySwap"]) == (64 * MiB, 64 * MiB)

    observed = wait_until(lambda: exited(runtime, handle), 30, what="hog killed")
    assert observed.oom_killed
    assert observed.exit_code == 137  # 128 + SIGKILL
    # Docker's "oom" event comes from the cgroup's OOM notification: the kernel did it.
    actions = {e.action for e in runtime.exits(since=began) if e.container_id == handle.ref}
    assert actions == {"oom", "die"}

    # Stopping a dead container still reports how it ended, then removes it.
    stopped = runtime.stop(handle, grace_s=1)
    assert (stopped.exit_code, stopped.oom_killed) == (137, True)
    with pytest.raises(NotFound):
        docker_client.containers.get(handle.ref)


# --- why a model can't start ---------------------------------------------------------------------


def test_missing_image_is_offline_and_start_refuses(
    runtime: DockerRuntime, docker_client: DockerClient, settings: Settings
) -> None:
    spec = docker_spec("ghost", "dxg-no-such-image:never")
    availability = runtime.check(spec)
    assert not availability.available
    assert "dxg-no-such-image:never" in availability.reason
    assert "docker pull dxg-no-such-image:never" in availability.reason
    with pytest.raises(ImageMissing) as caught:
        runtime.start(spec)
    assert caught.value.image == "dxg-no-such-image:never"
    assert (
        docker_client.containers.list(all=True, filters={"label": f"dxg.instance={settings.instance}"}) == []
    )


def test_unreachable_engine_names_the_endpoint(
    settings: Settings, sim_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", DEAD_SOCKET)
    runtime = DockerRuntime(settings)
    spec = sim_spec("nowhere", sim_image)
    availability = runtime.check(spec)
    assert not availability.available
    assert DEAD_SOCKET in availability.reason
    assert "No such file or directory" in availability.reason
    with pytest.raises(EngineUnavailable) as caught:
        runtime.start(spec)
    assert caught.value.endpoint == DEAD_SOCKET
    with pytest.raises(EngineUnavailable):
        runtime.find_managed()
    # The registry builds it anyway: the model reads Offline instead of breaking the app.
    from_registry = Runtimes(settings).for_spec(spec)
    assert isinstance(from_registry, DockerRuntime)
    assert isinstance(from_registry, Runtime)
    assert DEAD_SOCKET in from_registry.check(spec).reason


def test_port_in_use_names_the_container_and_a_running_model_is_not_started_twice(
    runtime: DockerRuntime, settings: Settings, sim_image: str
) -> None:
    first = sim_spec("holder", sim_image)
    handle = runtime.start(first)
    wait_until_ready(runtime, handle, first, timeout_s=30)

    again = runtime.check(first)
    assert not again.available
    assert f"already running as container dxg-{settings.instance}-holder" in again.reason
    with pytest.raises(AlreadyRunning):
        runtime.start(first)

    rival = sim_spec("rival", sim_image, port=first.port)
    availability = runtime.check(rival)
    assert not availability.available
    assert availability.reason == (
        f"port {first.port} is already in use by container dxg-{settings.instance}-holder ({handle.ref[:12]})"
    )
    with pytest.raises(PortInUse) as caught:
        runtime.start(rival)
    assert caught.value.port == first.port


def test_gpu_request_runs_or_says_why_not(
    runtime: DockerRuntime, settings: Settings, docker_client: DockerClient, sim_image: str
) -> None:
    assert device_requests(None) == []
    assert device_requests("all")[0]["Count"] == -1
    assert device_requests(("0", "2"))[0]["DeviceIDs"] == ["0", "2"]
    assert device_requests(("0",))[0]["Capabilities"] == [["gpu"]]

    spec = sim_spec("gpu-sim", sim_image, gpus="all")
    failure: RuntimeFailure | None = None
    try:
        handle = runtime.start(spec)
    except RuntimeFailure as exc:  # no NVIDIA runtime on this machine
        failure = exc
    if failure is None:
        requests = docker_client.containers.get(handle.ref).attrs["HostConfig"]["DeviceRequests"]
        assert requests[0]["Count"] == -1
        return
    assert GPU_HINT in str(failure)
    assert GPU_HINT in log_text(settings, "gpu-sim")
    # The container that could not start is not left behind.
    assert docker_client.containers.list(all=True, filters={"name": f"dxg-{settings.instance}-"}) == []


# --- ownership -----------------------------------------------------------------------------------


def test_find_managed_sees_only_its_own_instance(
    runtime: DockerRuntime, settings: Settings, second: Settings, sim_image: str
) -> None:
    other = DockerRuntime(second)
    mine = runtime.start(sim_spec("shared-id", sim_image))
    theirs = other.start(sim_spec("shared-id", sim_image))
    assert mine.extra["name"] != theirs.extra["name"]

    assert [(h.ref, h.model_id, h.extra["instance"]) for h in runtime.find_managed()] == [
        (mine.ref, "shared-id", settings.instance)
    ]
    assert [h.ref for h in other.find_managed()] == [theirs.ref]
    # Found handles work like the ones start() returned.
    assert runtime.find_managed()[0].started_at == pytest.approx(mine.started_at)
    assert other.inspect(other.find_managed()[0]).running


def test_an_old_exited_container_with_the_name_is_removed_on_start(
    runtime: DockerRuntime, settings: Settings, docker_client: DockerClient, sim_image: str
) -> None:
    name = runtime.container_name("leftover")
    old = docker_client.containers.run(
        sim_image,
        sim_args("leftover", "--fail-start"),
        name=name,
        labels={"dxg.instance": settings.instance},
        detach=True,
    )
    wait_until(lambda: docker_client.containers.get(old.id).status == "exited", 30, what="old one exited")

    handle = runtime.start(sim_spec("leftover", sim_image))
    assert handle.extra["name"] == name
    assert handle.ref != old.id
    with pytest.raises(NotFound):
        docker_client.containers.get(old.id)


def test_a_model_id_never_names_a_log_outside_the_log_dir(runtime: DockerRuntime) -> None:
    with pytest.raises(InvalidStream):
        runtime.logs(None, "../escape", 10)


def test_a_model_id_never_names_a_container_outside_its_pattern(runtime: DockerRuntime) -> None:
    assert runtime.container_name("llama-3.1") == f"dxg-{runtime.settings.instance}-llama-3.1"
    with pytest.raises(InvalidStream):
        runtime.container_name("x --privileged")
