"""Control-plane benchmark: how late the app records what servers do, and how /api/models scales.

    .venv/bin/python -m perf.control_plane                 # ~2-3 min (seeds a million events)
    .venv/bin/python -m perf.control_plane --p3-sizes 1000,100000 --loads 10 --crashes 10

Prints one JSON document to stdout (progress goes to stderr). Ground truth comes from the
simulator, whose log lines ``SIM_EVENT <name> t=<epoch>`` mark the moment it turned ready or
crashed (simulator/events.py); the app's side is the ``ts`` of the event it recorded.

- P1: simulator ready -> ReadyObserved recorded. Goal p50 <= 100 ms, p99 <= 300 ms.
- P2: simulator crash -> Crashed recorded. Goal p50 <= 500 ms.
- P3: ``GET /api/models`` with 50 models, at 1k and 1M stored events, through the real API
  routes (Starlette's TestClient). Goal: median at 1M over median at 1k <= 1.5.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.testclient import TestClient

from db.migrate import upgrade_to_head
from lifecycle.api import endpoints
from lifecycle.core.events import Crashed, Event, ReadyObserved, RecordedEvent, model_stream
from lifecycle.runtimes.logfile import log_path
from lifecycle.runtimes.ports import free_port
from lifecycle.service import LifecycleService
from perf.common import add_dir_argument, log, percentiles_ms, run_and_print, summary_ms, timed
from perf.event_store import fresh_store, seed
from settings import Settings
from simulator.events import parse_event

REPO_ROOT = Path(__file__).resolve().parent.parent
P3_MODELS = 50


# --- a service over simulator processes -------------------------------------------------------


def sim_entry(model_id: str, port: int, *sim_args: str) -> dict[str, Any]:
    command = f"{{python}} -m simulator --engine llamacpp --port {port} --model-id {model_id}"
    return {
        "id": model_id,
        "url": f"http://127.0.0.1:{port}",
        "engine": "llamacpp",
        "runtime": "process",
        "simulated": True,
        "workdir": str(REPO_ROOT),
        "load_command": " ".join([command, *sim_args]),
    }


def make_settings(folder: Path, models: Iterable[dict[str, Any]], **overrides: Any) -> Settings:
    catalog = folder / "models.yaml"
    catalog.write_text(yaml.safe_dump({"models": list(models)}, sort_keys=False), encoding="utf-8")
    settings = Settings(
        db_url=f"sqlite:///{folder / 'dxg.db'}",
        log_dir=folder / "logs",
        run_dir=folder / "run",
        catalog=catalog,
        **overrides,
    )
    upgrade_to_head(settings.db_url)
    return settings


def sim_moments(settings: Settings, model_id: str, name: str) -> list[float]:
    """The simulator's own times of ``name`` events in the model's log, in order."""
    text = log_path(settings.log_dir, model_id).read_text(encoding="utf-8", errors="replace")
    return [event.t for line in text.splitlines() if (event := parse_event(line)) and event.name == name]


def recorded(service: LifecycleService, model_id: str, event_type: type[Event]) -> list[RecordedEvent]:
    return [e for e in service.store.read_stream(model_stream(model_id)) if isinstance(e.event, event_type)]


def paired_latencies(truth: list[float], seen: list[RecordedEvent]) -> list[float]:
    if len(truth) != len(seen):
        raise RuntimeError(f"{len(truth)} simulator moments but {len(seen)} recorded events")
    return [event.ts - moment for moment, event in zip(truth, seen, strict=True)]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def bench_ready(folder: Path, loads: int) -> dict[str, Any]:
    """P1: load, wait ready, unload, ``loads`` times."""
    settings = make_settings(folder, [sim_entry("sim-p1", free_port(), "--startup-s", "0.5")])
    service = LifecycleService(settings)
    service.start()
    try:
        for n in range(loads):
            service.load("sim-p1", actor="bench")
            if service.wait("sim-p1", "ready", 30).phase != "ready":
                raise RuntimeError(f"load {n + 1} did not become ready")
            service.unload("sim-p1", actor="bench")
            service.wait("sim-p1", "stopped", 30)
        latencies = paired_latencies(
            sim_moments(settings, "sim-p1", "ready"), recorded(service, "sim-p1", ReadyObserved)
        )
    finally:
        service.shutdown()
    return percentiles_ms(latencies, {"p50": 100.0, "p99": 300.0})


def bench_crash(folder: Path, crashes: int) -> dict[str, Any]:
    """P2: a server that crashes 0.5 s after it is ready, restarted until ``crashes`` were seen."""
    entry = sim_entry("sim-p2", free_port(), "--startup-s", "0.1", "--crash-after-s", "0.6")
    # Restarted quickly and never given up on: the figure is about noticing, not backoff.
    settings = make_settings(folder, [entry], crash_limit=10_000, restart_initial_s=0.05, restart_max_s=0.05)
    service = LifecycleService(settings)
    service.start()
    try:
        service.load("sim-p2", actor="bench")
        wait_for(lambda: len(recorded(service, "sim-p2", Crashed)) >= crashes, crashes * 5.0, "crashes")
        service.unload("sim-p2", actor="bench")
        service.wait("sim-p2", "stopped", 30)
        seen = recorded(service, "sim-p2", Crashed)
        latencies = paired_latencies(sim_moments(settings, "sim-p2", "crash")[: len(seen)], seen)
    finally:
        service.shutdown()
    return percentiles_ms(latencies, {"p50": 500.0})


# --- P3: GET /api/models as history grows ----------------------------------------------------------


ROUNDS = 10


def api_client(folder: Path, total: int, stack: ExitStack) -> Callable[[], None]:
    """A GET /api/models call against a service over ``total`` seeded events."""
    # The ids event_store seeds (model-000 ...), as process models that are never started.
    models = [sim_entry(f"model-{m:03d}", free_port()) for m in range(P3_MODELS)]
    root = folder / f"api-{total}"
    root.mkdir()
    settings = make_settings(root, models)
    engine, store = fresh_store(root, "dxg")
    stack.callback(engine.dispose)
    started = time.perf_counter()
    seed(engine, total, P3_MODELS)
    store.rebuild_projection()
    log(f"  {total} events seeded in {time.perf_counter() - started:.1f}s")
    service = LifecycleService(settings, store=store)
    client = stack.enter_context(TestClient(Starlette(routes=endpoints.routes(lambda: service, None))))

    def get_models() -> None:
        answer = client.get("/api/models")
        if answer.status_code != 200 or len(answer.json()["models"]) != P3_MODELS:
            raise RuntimeError(f"GET /api/models answered {answer.status_code}")

    timed(get_models, 20)  # warm: caches, page cache, connection pool
    return get_models


def bench_api(folder: Path, sizes: list[int], reads: int) -> dict[str, Any]:
    """Every size's service stays up and they take turns, so drift and background work (the
    availability refreshes) fall on all sizes alike instead of on whichever ran last."""
    with ExitStack() as stack:
        calls = {size: api_client(folder, size, stack) for size in sizes}
        samples: dict[int, list[float]] = {size: [] for size in sizes}
        for _ in range(ROUNDS):
            for size, call in calls.items():
                samples[size] += timed(call, max(1, reads // ROUNDS))
    runs = [{"events": size, "models": P3_MODELS, **summary_ms(samples[size])} for size in sizes]
    ratio = round(runs[-1]["median_ms"] / runs[0]["median_ms"], 3)
    return {"runs": runs, "ratio_largest_over_smallest": ratio, "goal": 1.5, "met": ratio <= 1.5}


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if args.loads:
        log(f"P1: {args.loads} loads, simulator ready -> ReadyObserved")
        (folder / "p1").mkdir()
        result["p1_ready_to_recorded"] = bench_ready(folder / "p1", args.loads)
    if args.crashes:
        log(f"P2: {args.crashes} crashes, simulator crash -> Crashed")
        (folder / "p2").mkdir()
        result["p2_crash_to_recorded"] = bench_crash(folder / "p2", args.crashes)
    sizes = sorted(int(s) for s in args.p3_sizes.split(",") if s)
    if sizes:
        log(f"P3: GET /api/models with {P3_MODELS} models at {sizes} events")
        result["p3_get_models"] = bench_api(folder, sizes, args.reads)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loads", type=int, default=20, help="P1 samples (0 skips P1)")
    parser.add_argument("--crashes", type=int, default=20, help="P2 samples (0 skips P2)")
    parser.add_argument("--p3-sizes", default="1000,1000000", help="P3 event counts, comma-separated")
    parser.add_argument("--reads", type=int, default=500, help="timed GETs per P3 size")
    add_dir_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    run_and_print(parse_args(argv), run, "dxg-control-bench-")


if __name__ == "__main__":
    main()
