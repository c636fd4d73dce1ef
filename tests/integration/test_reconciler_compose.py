"""The reconciler with the compose runtime on the real Docker engine and the dxg-sim:local image.

The flow is the process runtime's (load, ready, crash, restart, unload), but the timer is
practically off and the runtime's own exit callback is detached, so a crash can only be
noticed through Docker's ``die`` event stream: the test proves that watcher wakes the
reconciler.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker import DockerClient

from lifecycle.core.events import Crashed, StartIssued, Stopped
from lifecycle.observe.docker_events import RETRY_FIRST_S, DockerWatch
from lifecycle.runtimes.container_labels import LABEL_INSTANCE, LABEL_MANAGED
from lifecycle.runtimes.registry import Runtimes
from settings import Settings
from simulator.config import DEFAULT_CRASH_EXIT_CODE
from tests.catalogs import write_catalog
from tests.integration.container_support import remove_leftovers, sim_args
from tests.integration.lifecycle_env import (
    LOADED_CRASHED_RESTARTED,
    make_settings,
    of_type,
    running_service,
    wait_for_types,
)
from tests.support import free_port, wait_until

pytestmark = pytest.mark.docker

# How long the watch must stay without a new kick before its count is taken as final.
QUIET_S = 1.0


@pytest.fixture(scope="module")
def sim_image(compose_sim_image: str) -> str:
    return compose_sim_image


@pytest.fixture
def project(settings: Settings, docker_client: DockerClient) -> Iterator[str]:
    name = f"dxgtest-{settings.instance}"
    yield name
    remove_leftovers(docker_client, [settings.instance], [name])


def compose_model(tmp_path: Path, image: str, project: str, *sim_extra: str) -> dict[str, Any]:
    """A catalog entry for a one-service compose file on a free host port."""
    port = free_port()
    command = ", ".join(f'"{arg}"' for arg in sim_args("sim-c", *sim_extra))
    file = tmp_path / "compose.yaml"
    file.write_text(
        textwrap.dedent(
            f"""
            services:
              sim:
                image: {image}
                command: [{command}]
                ports:
                  - "127.0.0.1:${{SIM_PORT}}:8000"
            """
        ).lstrip(),
        encoding="utf-8",
    )
    return {
        "id": "sim-c",
        "url": f"http://127.0.0.1:{port}",
        "engine": "nim",
        "runtime": "compose",
        "simulated": True,
        "startup_timeout_s": 60,
        "compose": {"file": str(file), "service": "sim", "project": project},
        "env": {"SIM_PORT": str(port)},
    }


def test_compose_load_ready_crash_restart_unload(
    settings: Settings, tmp_path: Path, docker_client: DockerClient, sim_image: str, project: str
) -> None:
    model = compose_model(tmp_path, sim_image, project, "--startup-s", "0.5", "--crash-after-s", "4")
    catalog = write_catalog(tmp_path / "models.yaml", model)
    quiet = make_settings(settings, catalog, tick_s=60, fast_tick_s=60)
    runtimes = Runtimes(quiet)
    with running_service(quiet, runtimes) as service:
        runtimes.set_on_exit(None)  # exits must now come from Docker's event stream
        service.load("sim-c")
        wait_for_types(service, "sim-c", LOADED_CRASHED_RESTARTED, timeout_s=90)
        service.unload("sim-c")
        assert service.wait("sim-c", "stopped", timeout_s=60).phase == "stopped"

        crash = of_type(service, "sim-c", Crashed)[0]
        assert crash.exit_code == DEFAULT_CRASH_EXIT_CODE
        assert "crashing as asked" in crash.log_tail
        first, second = of_type(service, "sim-c", StartIssued)[:2]
        assert first.handle["runtime"] == "compose"
        assert first.handle["extra"]["project"] == project
        assert first.handle["ref"] != second.handle["ref"]
        assert of_type(service, "sim-c", Stopped)[-1].reason == "unload"
        assert (
            docker_client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={quiet.instance}"})
            == []
        )


def test_unload_during_backoff_leaves_no_exited_container(
    settings: Settings, tmp_path: Path, docker_client: DockerClient, sim_image: str, project: str
) -> None:
    model = compose_model(tmp_path, sim_image, project, "--startup-s", "0.3", "--crash-after-s", "1")
    catalog = write_catalog(tmp_path / "models.yaml", model)
    # A restart delay longer than the test: the unload lands while the model waits in backoff.
    patient = make_settings(settings, catalog, restart_initial_s=300, restart_max_s=300)
    mine = {"label": f"{LABEL_INSTANCE}={patient.instance}"}
    with running_service(patient) as service:
        service.load("sim-c")
        wait_for_types(service, "sim-c", LOADED_CRASHED_RESTARTED[:5], timeout_s=60)
        wait_until(
            lambda: docker_client.containers.list(all=True, filters=mine) == [],
            timeout_s=30,
            what="the crashed container to be removed",
        )
        service.unload("sim-c")
        assert service.wait("sim-c", "stopped", timeout_s=30).phase == "stopped"
        assert len(of_type(service, "sim-c", StartIssued)) == 1
        assert docker_client.containers.list(all=True, filters=mine) == []


def test_unload_while_a_restart_is_starting_waits_until_nothing_runs(
    settings: Settings, tmp_path: Path, docker_client: DockerClient, sim_image: str, project: str
) -> None:
    model = compose_model(tmp_path, sim_image, project, "--startup-s", "0.3", "--crash-after-s", "1")
    catalog = write_catalog(tmp_path / "models.yaml", model)
    live = {"label": f"{LABEL_INSTANCE}={settings.instance}", "status": "running"}
    with running_service(make_settings(settings, catalog)) as service:
        service.load("sim-c")
        wait_for_types(service, "sim-c", LOADED_CRASHED_RESTARTED[:5], timeout_s=60)
        # `compose up` of the restart takes a while: the unload lands in the middle of it.
        wait_until(lambda: service.reconciler.acting_on("sim-c"), timeout_s=30, interval_s=0.005)
        service.unload("sim-c")
        assert service.wait("sim-c", "stopped", timeout_s=60).phase == "stopped"
        assert docker_client.containers.list(filters=live) == []
        assert not service.reconciler.acting_on("sim-c")


def test_docker_watch_kicks_on_its_instances_die_events_only(
    settings: Settings, docker_client: DockerClient, sim_image: str
) -> None:
    kicks: list[float] = []
    watch = DockerWatch(settings.instance, lambda: kicks.append(time.monotonic()))
    other = f"{settings.instance}-other"
    containers = []
    watch.start()
    try:
        wait_until(watch.connected.is_set, 15, what="the event stream")
        assert len(kicks) == 1  # the resync on connect
        for instance in (other, settings.instance):
            labels = {LABEL_MANAGED: "true", LABEL_INSTANCE: instance}
            container = docker_client.containers.run(
                sim_image, sim_args("w", "--fail-start"), labels=labels, detach=True
            )
            containers.append(container)
            container.wait(timeout=30)
        wait_until(lambda: len(kicks) >= 2, 15, what="a kick for our container's die event")
        # Both containers are dead and Docker streams events in order, so a kick for the other
        # instance's die (the earlier one) would come before ours. Once the watch has been
        # quiet for a while after the last kick, the count is final: no late kick can land
        # after the assert. (Quiet is the condition; events already sent arrive in ms.)
        wait_until(
            lambda: time.monotonic() - kicks[-1] >= QUIET_S, 15, interval_s=0.05, what="no further kick"
        )
        assert len(kicks) == 2, "another instance's container must not wake this one"
    finally:
        watch.close()
        for container in containers:
            container.remove(force=True)
    assert not watch.running


def test_docker_watch_retries_while_the_engine_is_unreachable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/dxg-no-such-docker.sock")
    watch = DockerWatch(settings.instance, lambda: None)
    watch.start()
    try:
        wait_until(lambda: watch.attempts >= 3, 10, what="connection attempts with backoff")
        assert watch.running
        assert not watch.connected.is_set()
    finally:
        started = time.monotonic()
        watch.close()
    assert not watch.running
    # After three attempts the thread is in (or about to enter) a 4 s backoff: close() must cut
    # it short, not wait it out (a sleep instead of an event wait). Waking a thread takes ms
    # even on a loaded machine; close() joins for up to 5 s, so the old "< 5" caught nothing.
    assert time.monotonic() - started < 2 * RETRY_FIRST_S
