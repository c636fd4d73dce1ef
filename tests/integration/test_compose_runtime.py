"""The compose runtime with the real compose tool and engine: compose/sim.yaml and small files.

The host port of compose/sim.yaml's sim-nim comes from DXG_SIM_NIM_PORT, which the specs set
through the catalog's ``env`` (the compose process's environment). Every test removes its
projects' containers and networks afterwards, also when it fails.
"""

from __future__ import annotations

import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker import DockerClient
from docker.errors import NotFound

from lifecycle.catalog import ModelSpec
from lifecycle.core.events import InvalidStream
from lifecycle.runtimes.compose import PROJECT_LABEL, ComposeRuntime
from lifecycle.runtimes.protocol import ComposeInvalid, ImageMissing, RuntimeFailure
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
from tests.support import REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.docker

SIM_COMPOSE = REPO_ROOT / "compose" / "sim.yaml"


@pytest.fixture(scope="module")
def sim_image(compose_sim_image: str) -> str:
    return compose_sim_image


@pytest.fixture
def projects(settings: Settings, second: Settings) -> list[str]:
    """Every compose project a test may create; explicit ones are appended by the test."""
    return [f"dxg-{settings.instance}", f"dxg-{second.instance}"]


@pytest.fixture
def runtime(
    settings: Settings, second: Settings, projects: list[str], docker_client: DockerClient
) -> Iterator[ComposeRuntime]:
    rt = ComposeRuntime(settings)
    rt.on_exit = ExitRecorder()
    yield rt
    remove_leftovers(docker_client, [settings.instance, second.instance], projects)
    rt.host.forget()


def compose_spec(model_id: str, file: Path, service: str, port: int, **fields: Any) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        url=f"http://127.0.0.1:{port}",
        engine="nim",
        runtime="compose",
        startup_timeout_s=30,
        compose={"file": file, "service": service, **fields.pop("compose", {})},
        **fields,
    )


def sim_nim_spec(model_id: str = "sim-nim") -> ModelSpec:
    port = free_port()
    return compose_spec(model_id, SIM_COMPOSE, "sim-nim", port, env={"DXG_SIM_NIM_PORT": str(port)})


def write_compose(tmp_path: Path, body: str, name: str = "compose.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def small_compose(tmp_path: Path, image: str, *sim_extra: str) -> Path:
    """One simulator service whose host port is ${SIM_PORT}."""
    command = ", ".join(f'"{arg}"' for arg in sim_args("small", "--startup-s", "0", *sim_extra))
    return write_compose(
        tmp_path,
        f"""
        services:
          small:
            image: {image}
            command: [{command}]
            ports:
              - "127.0.0.1:${{SIM_PORT}}:8000"
        """,
    )


def small_spec(model_id: str, file: Path, **compose: str) -> ModelSpec:
    port = free_port()
    return compose_spec(model_id, file, "small", port, env={"SIM_PORT": str(port)}, compose=compose)


# --- start, ready, stop --------------------------------------------------------------------------


def test_sim_nim_start_ready_stop(
    runtime: ComposeRuntime, settings: Settings, docker_client: DockerClient, sim_image: str
) -> None:
    spec = sim_nim_spec()
    assert runtime.check(spec).available

    handle = runtime.start(spec)
    project = f"dxg-{settings.instance}"
    assert handle.extra["project"] == project
    assert handle.extra["service"] == "sim-nim"
    wait_until_ready(runtime, handle, spec, timeout_s=30)

    container = docker_client.containers.get(handle.ref)
    labels = container.labels
    assert labels[PROJECT_LABEL] == project
    assert (labels["dxg.managed"], labels["dxg.instance"], labels["dxg.model"]) == (
        "true",
        settings.instance,
        "sim-nim",
    )
    assert labels["dxg.simulated"] == "true"  # the file's own labels are kept
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert container.attrs["HostConfig"]["PortBindings"]["8000/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": str(spec.port)}
    ]
    assert [h.ref for h in runtime.find_managed()] == [handle.ref]

    stopped = runtime.stop(handle, grace_s=10)
    assert not stopped.running
    assert stopped.exit_code == 0
    with pytest.raises(NotFound):
        docker_client.containers.get(handle.ref)
    assert runtime.inspect(handle).missing
    # Like `compose down`: the project's network goes with its last container.
    assert docker_client.networks.list(filters={"label": f"{PROJECT_LABEL}={project}"}) == []

    text = log_text(settings, "sim-nim")
    names = sim_event_names(text)
    assert names[:3] == ["start", "listening", "ready"]
    assert names[-1] == "stopped"
    assert f"-p {project} -f {SIM_COMPOSE}" in text
    assert "up -d --no-deps sim-nim" in text
    assert "catalog env: DXG_SIM_NIM_PORT" in text


def test_crash_is_seen_and_the_next_start_replaces_it(
    runtime: ComposeRuntime,
    settings: Settings,
    docker_client: DockerClient,
    projects: list[str],
    sim_image: str,
    tmp_path: Path,
) -> None:
    project = f"dxgtest-{settings.instance}"
    projects.append(project)
    file = small_compose(tmp_path, sim_image, "--crash-after-s", "1")
    spec = small_spec("small-crash", file, project=project)
    handle = runtime.start(spec)
    assert handle.extra["project"] == project

    observed = wait_until(lambda: exited(runtime, handle), 30, what="crash seen by inspect")
    assert observed.exit_code == DEFAULT_CRASH_EXIT_CODE
    assert not observed.oom_killed
    recorder = runtime.on_exit
    assert isinstance(recorder, ExitRecorder)
    wait_until(lambda: ("small-crash", DEFAULT_CRASH_EXIT_CODE) in recorder.seen(), 10, what="on_exit")
    assert [h.ref for h in runtime.find_managed()] == [handle.ref]
    text = log_text(settings, "small-crash")
    assert "crashing as asked" in text
    assert f"exited with code {DEFAULT_CRASH_EXIT_CODE}" in text

    again = runtime.start(spec)
    assert again.ref != handle.ref
    with pytest.raises(NotFound):
        docker_client.containers.get(handle.ref)


# --- why a model can't start ---------------------------------------------------------------------


def test_invalid_compose_file_is_offline_with_the_tools_words(
    runtime: ComposeRuntime, sim_image: str, tmp_path: Path
) -> None:
    file = write_compose(
        tmp_path,
        f"""
        services:
          small:
            image: {sim_image}
            ports: "8000:8000"
        """,
    )
    spec = compose_spec("broken", file, "small", free_port())
    availability = runtime.check(spec)
    assert not availability.available
    assert availability.reason.startswith(f"compose file {file} is invalid: ")
    assert "services.small.ports" in availability.reason  # docker-compose's own diagnosis
    with pytest.raises(ComposeInvalid):
        runtime.start(spec)

    unknown = compose_spec("unknown", SIM_COMPOSE, "sim-nope", free_port())
    assert "there is no service 'sim-nope'; it defines: sim-llamacpp, sim-nim, sim-vllm" in (
        runtime.check(unknown).reason
    )


def test_missing_image_busy_port_and_missing_env_are_offline(
    runtime: ComposeRuntime, sim_image: str, tmp_path: Path
) -> None:
    ghost = write_compose(
        tmp_path, "services:\n  small:\n    image: dxg-no-such-image:never\n", name="ghost.yaml"
    )
    availability = runtime.check(compose_spec("ghost", ghost, "small", free_port()))
    assert "image dxg-no-such-image:never is not on this machine" in availability.reason
    with pytest.raises(ImageMissing):
        runtime.start(compose_spec("ghost", ghost, "small", free_port()))

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        busy = compose_spec("busy", SIM_COMPOSE, "sim-nim", port, env={"DXG_SIM_NIM_PORT": str(port)})
        reason = runtime.check(busy).reason
    assert reason.startswith(f"port {port} is already in use by process ")

    needy = compose_spec("needy", SIM_COMPOSE, "sim-nim", free_port(), env={"DXG_TEST_NEVER_SET": None})
    assert "DXG_TEST_NEVER_SET not set" in runtime.check(needy).reason


def test_unreachable_engine_is_offline_with_the_endpoint(
    settings: Settings, sim_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", DEAD_SOCKET)
    availability = ComposeRuntime(settings).check(sim_nim_spec())
    assert not availability.available
    assert f"Docker is not reachable at {DEAD_SOCKET}" in availability.reason


def test_a_failing_up_raises_with_the_tools_stderr(
    runtime: ComposeRuntime, settings: Settings, sim_image: str, tmp_path: Path
) -> None:
    file = write_compose(
        tmp_path,
        f"""
        services:
          small:
            image: {sim_image}
            user: no-such-user
        """,
    )
    with pytest.raises(RuntimeFailure) as caught:
        runtime.start(compose_spec("nobody", file, "small", free_port()))
    assert "up -d --no-deps small` failed" in str(caught.value)
    assert "no-such-user" in str(caught.value)
    assert "no-such-user" in log_text(settings, "nobody")
    # The container that could not start is not left behind.
    assert runtime.find_managed() == []


# --- ownership -----------------------------------------------------------------------------------


def test_find_managed_is_scoped_to_the_instance(
    runtime: ComposeRuntime, settings: Settings, second: Settings, sim_image: str, tmp_path: Path
) -> None:
    file = small_compose(tmp_path, sim_image)
    other = ComposeRuntime(second)
    mine = runtime.start(small_spec("small", file))
    theirs = other.start(small_spec("small", file))
    assert (mine.extra["project"], theirs.extra["project"]) == (
        f"dxg-{settings.instance}",
        f"dxg-{second.instance}",
    )
    assert [(h.ref, h.model_id) for h in runtime.find_managed()] == [(mine.ref, "small")]
    assert [h.ref for h in other.find_managed()] == [theirs.ref]

    # Output is copied into each instance's own log.
    for owner in (settings, second):
        wait_until(lambda owner=owner: "SIM_EVENT ready" in log_text(owner, "small"), 30, what="ready logged")
    began = time.time()
    other.stop(theirs, grace_s=5)
    assert runtime.inspect(mine).running
    assert [e.container_id for e in other.exits(since=began) if e.action == "die"] == [theirs.ref]
    assert runtime.exits(since=began) == []


def test_a_model_id_never_names_an_override_outside_the_run_dir(settings: Settings) -> None:
    runtime = ComposeRuntime(settings)
    assert runtime.override_path("sim-nim").parent == settings.run_dir / settings.instance / "compose"
    with pytest.raises(InvalidStream):
        runtime.override_path("../../escape")
