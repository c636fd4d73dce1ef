"""The simulator image: built locally by the ``make sim-image`` entry, run with Docker and compose."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from docker import DockerClient
from docker.models.containers import Container

from inference import ChatRequest, chat
from simulator.events import parse_event
from simulator.image.build import INPUTS_LABEL, build_image
from simulator.tokens import expected_text
from tests.support import REPO_ROOT, free_port, skip_or_fail, wait_until

pytestmark = pytest.mark.docker

COMPOSE_FILE = REPO_ROOT / "compose" / "sim.yaml"
PROMPT = [{"role": "user", "content": "hello from the host"}]
MAX_IMAGE_BYTES = 80e6


@pytest.fixture(scope="module")
def sim_image(docker_client: DockerClient) -> str:
    outcome = build_image()  # the function behind `python -m simulator.image` (make sim-image)
    assert outcome.size_bytes < MAX_IMAGE_BYTES
    return outcome.tag


@contextmanager
def run_container(
    docker_client: DockerClient, image: str, command: list[str] | None
) -> Iterator[tuple[Container, str]]:
    port = free_port()
    container = docker_client.containers.run(
        image,
        command=command,
        ports={"8000/tcp": ("127.0.0.1", port)},
        labels={"dxg.test": "sim-image"},
        detach=True,
    )
    try:
        yield container, f"http://127.0.0.1:{port}"
    finally:
        container.remove(force=True)


def status(url: str) -> int:
    return httpx.get(url, timeout=2.0).status_code


def test_rebuild_with_same_inputs_is_skipped(sim_image: str, docker_client: DockerClient) -> None:
    again = build_image(sim_image)
    assert not again.built
    image = docker_client.images.get(sim_image)
    assert image.labels[INPUTS_LABEL] == again.inputs


def test_container_loads_streams_and_stops_cleanly(sim_image: str, docker_client: DockerClient) -> None:
    args = ["--engine", "nim", "--port", "8000", "--host", "0.0.0.0", "--model-id", "sim-img"]
    # The load counts from the interpreter's start; it must outlast the container's own start
    # and the first "live" answer on a loaded machine, so that one probe lands inside it.
    args += ["--startup-s", "3", "--ttft-ms", "50", "--tokens-per-s", "100"]
    with run_container(docker_client, sim_image, args) as (container, base):
        # The port is published before the server listens; errors just mean "not yet".
        wait_until(lambda: status(f"{base}/v1/health/live") == 200, 30, what="container live")
        loading = status(f"{base}/v1/health/ready")
        probed_at = time.time()  # the container's log shares this machine's wall clock
        wait_until(lambda: status(f"{base}/v1/health/ready") == 200, 30, what="container ready")

        result = chat(ChatRequest(base, "sim-img", PROMPT, max_tokens=8))
        assert result.text == expected_text(8)
        assert (result.output_tokens, result.tokens_from_usage, result.prompt_tokens) == (8, True, 4)
        assert result.ttft_s is not None
        assert result.ttft_s >= 0.050

        container.stop(timeout=10)
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0
        events = [e for line in container.logs().decode().splitlines() if (e := parse_event(line))]
        names = [e.name for e in events]
        assert names[:3] == ["start", "listening", "ready"]
        assert names[-1] == "stopped"
        # Probed right after "live", and by the container's own clock before it was ready:
        # the 503 of a loading model is what that probe must have seen.
        ready_at = events[2].t
        assert probed_at < ready_at, f"probed {probed_at - ready_at:.2f}s after the load ended: raise it"
        assert loading == 503


def test_default_command_serves_nim_on_8000(sim_image: str, docker_client: DockerClient) -> None:
    with run_container(docker_client, sim_image, None) as (_, base):
        wait_until(lambda: status(f"{base}/v1/health/ready") == 200, 30, what="container ready")
        models = httpx.get(f"{base}/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["sim-nim"]


def compose_cmd() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and (
        subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    skip_or_fail("DXG_REQUIRE_DOCKER", "neither docker-compose nor the compose plugin is installed")
    raise AssertionError("unreachable")


def test_compose_file_is_valid_and_port_is_overridable() -> None:
    env = {**os.environ, "DXG_SIM_NIM_PORT": "18999"}
    out = subprocess.run(
        [*compose_cmd(), "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "sim-nim:" in out
    assert "127.0.0.1:18999:8000" in out
    assert "restart: 'no'" in out or 'restart: "no"' in out


def test_compose_up_serves_sim_nim(sim_image: str) -> None:
    port = free_port()
    project = f"dxgsimtest{os.getpid()}"
    env = {**os.environ, "DXG_SIM_NIM_PORT": str(port)}
    compose = [*compose_cmd(), "-f", str(COMPOSE_FILE), "-p", project]
    try:
        # Inside the try: a start that fails halfway (a port taken, a container created but not
        # started) still leaves a project that `down` must remove.
        up = subprocess.run([*compose, "up", "-d", "sim-nim"], env=env, capture_output=True, text=True)
        assert up.returncode == 0, f"compose up failed:\n{up.stderr}"
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: status(f"{base}/v1/health/ready") == 200, 30, what="compose sim-nim ready")
        assert chat(ChatRequest(base, "sim-nim", PROMPT, max_tokens=3)).text == expected_text(3)
    finally:
        subprocess.run([*compose, "down", "--timeout", "10"], env=env, capture_output=True, check=False)
