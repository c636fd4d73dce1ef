"""Faults of a model served by the simulator image as a real container, under a real in-process
service: an OOM kill under ``mem_limit``, and a ready model's container killed, removed or paused
behind the app's back."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, Final

import pytest
from docker.errors import APIError, NotFound

from lifecycle.core.events import Crashed, ReadyObserved
from lifecycle.runtimes.container_labels import LABEL_INSTANCE
from settings import Settings
from tests.catalogs import sim_docker
from tests.integration.container_support import remove_leftovers
from tests.integration.lifecycle_env import events, wait_for_count
from tests.reliability.conftest import Record, ServiceFactory
from tests.support import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LIVENESS: Final = {"liveness_period_s": 0.3, "liveness_timeout_s": 0.5, "liveness_failures": 3}
# Back to ready after a killed or removed container: the die event, a short backoff, a new container.
BACK_READY_BOUND_S: Final = 10.0
# A paused one must first fail its liveness checks (3 x (0.3 + 0.5) s) before the same.
PAUSED_BACK_READY_BOUND_S: Final = BACK_READY_BOUND_S + 3 * (0.3 + 0.5) + 2.0
# The simulator in the container, with a thread that asks for 1 GiB once it has been up a while.
OOM_AFTER_S: Final = 4.0
HOG = f"""
import sys, threading
sys.argv = ["simulator", *sys.argv[1:]]
threading.Timer({OOM_AFTER_S}, lambda: bytearray(1024 * 2**20)).start()
from simulator.__main__ import main
sys.exit(main())
"""


@pytest.fixture
def containers(settings: Settings, docker_client: Any, sim_image: str) -> Iterator[Any]:
    """The Docker client; every container of this instance is removed afterwards (unpaused first).
    Asked for before ``service_with``, so this runs after the service has shut down."""
    yield docker_client
    label = {"label": f"{LABEL_INSTANCE}={settings.instance}"}
    for container in docker_client.containers.list(all=True, sparse=True, filters=label):
        with contextlib.suppress(NotFound, APIError):
            container.unpause()
    remove_leftovers(docker_client, [settings.instance])


def instance_containers(client: Any, settings: Settings) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={settings.instance}"})


def test_an_oom_kill_is_reported(
    containers: Any, service_with: ServiceFactory, settings: Settings, record: Record
) -> None:
    model = sim_docker("sim-oom", free_port())
    model["docker"] = {
        **model["docker"],
        "entrypoint": ["/usr/bin/python3.11", "-c", HOG],
        "mem_limit": "128m",
    }
    service = service_with(model, crash_limit=1)
    service.load("sim-oom")
    assert service.wait("sim-oom", "ready", timeout_s=60).loaded
    wait_for_count(service, "sim-oom", "Crashed", 1, OOM_AFTER_S + 30)
    crash = next(e.event for e in events(service, "sim-oom") if isinstance(e.event, Crashed))
    record("OOM kill (mem_limit 128m)", "Crashed", {"oom": crash.oom, "exit_code": crash.exit_code})
    assert crash.oom is True
    assert crash.exit_code == 137


@pytest.mark.parametrize("fault", ["kill", "rm -f", "pause"])
def test_a_container_killed_removed_or_paused_comes_back(
    fault: str, containers: Any, service_with: ServiceFactory, settings: Settings, record: Record
) -> None:
    service = service_with(sim_docker("sim-box", free_port()), **LIVENESS)
    service.load("sim-box")
    assert service.wait("sim-box", "ready", timeout_s=60).loaded
    (container,) = instance_containers(containers, settings)
    began = time.time()
    if fault == "kill":
        container.kill()
    elif fault == "rm -f":
        container.remove(force=True)
    else:
        container.pause()
    bound = PAUSED_BACK_READY_BOUND_S if fault == "pause" else BACK_READY_BOUND_S
    wait_for_count(service, "sim-box", "ReadyObserved", 2, bound + 20)
    recorded = events(service, "sim-box")
    ready = [e for e in recorded if isinstance(e.event, ReadyObserved)][1]
    kinds = [e.type for e in recorded]
    back_s = round(ready.ts - began, 2)
    live = [c for c in instance_containers(containers, settings) if c.status == "running"]
    figure = {"back_ready_s": back_s, "via": kinds[kinds.index("ReadyObserved") + 1], "containers": len(live)}
    record(f"docker {fault} of a ready model", "back to ready", figure)
    assert back_s < bound
    assert len(live) == 1
    assert live[0].id != container.id
