"""What a model on another node costs, on a real two-node swarm made here (tests/swarm_bed.py).

    .venv/bin/python -m perf.swarm_scaleout                 # root and Docker; about 3 minutes
    .venv/bin/python -m perf.swarm_scaleout --repeats 8

Prints one JSON document (progress goes to stderr). The lifecycle service runs the simulator's
image (startup 0 s) two ways, loaded and unloaded in turn, the order alternating each repeat:

- ``docker``: runtime docker, a container on this machine's engine;
- ``swarm``: runtime swarm, a service pinned to node 2 (a second dockerd in its own network
  namespace, which answers at 10.231.7.2).

Figures, from the audit history's own timestamps (so the app's recording is in them):

- ``load_to_ready_s``: LoadRequested to ReadyObserved, per runtime, and the median ratio
  swarm / docker over the pairs;
- ``crash_to_crashed_s``: the simulator's own ``SIM_EVENT crash`` moment (written just before
  it exits; the container shares this machine's clock) to the recorded Crashed, on node 2;
- ``node_down``: node 2's dockerd SIGKILLed (a node losing power), to the manager calling it
  down (``docker node inspect``), and to the model reading Offline with the node named; then
  from dockerd started again to the model ready again.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import time
from pathlib import Path
from typing import Any, Final

from lifecycle.core.events import Crashed, LoadRequested, ReadyObserved
from lifecycle.service import LifecycleService
from perf.bench_support import machine
from perf.common import add_dir_argument, log, run_and_print
from simulator.events import parse_event
from simulator.image.build import build_image
from tests import swarm_bed
from tests.catalogs import write_catalog
from tests.integration.container_support import sim_args
from tests.integration.lifecycle_env import events, make_settings, running_service
from tests.settings_support import isolated_settings
from tests.support import free_port, wait_until

DOCKER: Final = "docker"
SWARM: Final = "swarm"
CRASHER: Final = "swarm-crash"
CRASH_AFTER_S: Final = 2.0
WAIT_S: Final = 120.0


def catalog(image: str, bed: swarm_bed.Bed) -> list[dict[str, Any]]:
    def entry(model_id: str, runtime: str, address: str, *extra: str) -> dict[str, Any]:
        port = free_port()
        place = {"node": swarm_bed.NODE2} if runtime == SWARM else {}
        return {
            "id": model_id,
            "url": f"http://{address}:{port}",
            "engine": "nim",
            "runtime": runtime,
            "simulated": True,
            "startup_timeout_s": 60,
            runtime: {"image": image, **place, "ports": {8000: port}, "command": sim_args(model_id, *extra)},
        }

    return [
        entry(DOCKER, DOCKER, "127.0.0.1"),
        entry(SWARM, SWARM, bed.node2_addr),
        entry(CRASHER, SWARM, bed.node2_addr, "--crash-after-s", str(CRASH_AFTER_S)),
    ]


def _ts(service: LifecycleService, model_id: str, kind: type, after: int) -> float | None:
    found = [e for e in events(service, model_id) if isinstance(e.event, kind) and e.position > after]
    return found[0].ts if found else None


def load_once(service: LifecycleService, model_id: str) -> float:
    """LoadRequested -> ReadyObserved of one load, then unloaded again."""
    after = max((e.position for e in events(service, model_id)), default=0)
    service.load(model_id)
    ready = wait_until(lambda: _ts(service, model_id, ReadyObserved, after), WAIT_S, what=f"{model_id} ready")
    asked = _ts(service, model_id, LoadRequested, after)
    assert asked is not None
    service.unload(model_id)
    service.wait(model_id, "stopped", timeout_s=WAIT_S)
    return ready - asked


def crash_once(service: LifecycleService, log_dir: Path) -> float:
    after = max((e.position for e in events(service, CRASHER)), default=0)
    service.load(CRASHER)
    recorded = wait_until(lambda: _ts(service, CRASHER, Crashed, after), WAIT_S, what="Crashed")
    service.unload(CRASHER)
    service.wait(CRASHER, "stopped", timeout_s=WAIT_S)
    lines = (log_dir / f"{CRASHER}.log").read_text(errors="replace").splitlines()
    crashes = [e.t for line in lines if (e := parse_event(line)) and e.name == "crash"]
    return recorded - crashes[-1]


def node_down(service: LifecycleService, bed: swarm_bed.Bed) -> dict[str, float]:
    service.load(SWARM)
    service.wait(SWARM, "ready", timeout_s=WAIT_S)
    killed = time.monotonic()
    swarm_bed.stop_node2(signal.SIGKILL)
    wait_until(lambda: swarm_bed.node_state(bed.node2_id) == "down", WAIT_S, what="the manager: node 2 down")
    manager_s = time.monotonic() - killed

    def offline() -> bool:
        reason = service.status_of(SWARM).reason or ""
        return swarm_bed.NODE2 in reason and "down" in reason

    wait_until(offline, WAIT_S, what="the model Offline")
    offline_s = time.monotonic() - killed
    started = time.monotonic()
    swarm_bed.start_node2()
    wait_until(lambda: service.status_of(SWARM).loaded, WAIT_S, what="the model back")
    back_s = time.monotonic() - started
    service.unload(SWARM)
    service.wait(SWARM, "stopped", timeout_s=WAIT_S)
    return {
        "kill_to_manager_down_s": round(manager_s, 2),
        "kill_to_offline_s": round(offline_s, 2),
        "manager_down_to_offline_s": round(offline_s - manager_s, 2),
        "node_restarted_to_ready_s": round(back_s, 2),
    }


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(samples), 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
        "all": [round(s, 3) for s in samples],
    }


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    reason = swarm_bed.why_unavailable()
    if reason is not None:
        raise SystemExit(reason)
    image = build_image().tag
    result: dict[str, Any] = {"machine_at_start": machine(), "repeats": args.repeats}
    made = time.monotonic()
    bed = swarm_bed.up(image)
    result["bed_setup_s"] = round(time.monotonic() - made, 2)
    try:
        settings = make_settings(
            isolated_settings(folder), write_catalog(folder / "models.yaml", *catalog(image, bed))
        )
        with running_service(settings) as service:
            loads: dict[str, list[float]] = {DOCKER: [], SWARM: []}
            for repeat in range(args.repeats):
                for model_id in (DOCKER, SWARM) if repeat % 2 == 0 else (SWARM, DOCKER):
                    loads[model_id].append(load_once(service, model_id))
                    log(f"repeat {repeat + 1}: {model_id} ready after {loads[model_id][-1]:.2f}s")
            ratios = [s / d for d, s in zip(loads[DOCKER], loads[SWARM], strict=True)]
            result["load_to_ready_s"] = {
                DOCKER: _summary(loads[DOCKER]),
                SWARM: _summary(loads[SWARM]),
                "ratio_swarm_over_docker": round(statistics.median(ratios), 2),
            }
            crashes = [crash_once(service, settings.log_dir) for _ in range(args.crashes)]
            result["crash_to_crashed_s"] = _summary(crashes)
            log(f"crash to Crashed: {result['crash_to_crashed_s']}")
            result["node_down"] = node_down(service, bed)
            log(f"node down: {result['node_down']}")
    finally:
        swarm_bed.down()
    result["machine_at_end"] = machine()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_dir_argument(parser)
    parser.add_argument("--repeats", type=int, default=5, help="load pairs, the order alternating")
    parser.add_argument("--crashes", type=int, default=3)
    run_and_print(parser.parse_args(argv), run, prefix="perf-swarm-")


if __name__ == "__main__":
    main()
