"""Each benchmark run of the app measures from a process of its own (``benchmark.worker``).

Real app lifespan, real simulator processes, real child processes: the run's stored pid is the
child's, the app's own busy threads don't void the measurement, a cancel reaches the child, and
a child killed mid-run leaves a partial run, an error that says so, and a queue that goes on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from starlette.testclient import TestClient

from benchmark.loop_health import CancelToken
from benchmark.run_process import COMMAND, RunProcess
from benchmark.transport import Target
from benchmark.worker_protocol import RunSpec
from benchmark.workload import SweepWorkload
from db.benchmark_store import BenchmarkStore
from db.session import make_engine
from settings import Settings
from tests.app_harness import api_settings, serve
from tests.catalogs import sim_process, write_catalog
from tests.integration.test_benchmark_api import LONG, TINY, finished, load, start
from tests.support import free_port, wait_until

pytestmark = pytest.mark.timeout(120)

# Enough requests per level for a p99 of the runner's loop lag to mean something.
STEADY = {**TINY, "concurrency": [1, 4], "requests_per_level": 40}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    catalog = write_catalog(
        tmp_path / "models.yaml", sim_process("bench-a", free_port(), "--tokens-per-s", "400")
    )
    return api_settings(tmp_path, catalog)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with serve(settings) as client:
        yield client


def workers() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if child.is_running() and child.cmdline()[-2:] == list(COMMAND[-2:])
    ]


def running(client: TestClient, run_id: str) -> dict[str, Any] | None:
    body = client.get(f"/api/benchmarks/{run_id}").json()
    return body if body["state"] == "running" and body["progress"] else None


def stored_pid(settings: Settings, run_id: str) -> object:
    engine = make_engine(settings.db_url)
    try:
        return BenchmarkStore(engine).get(run_id).host.get("pid")
    finally:
        engine.dispose()


def test_a_run_measures_from_its_own_process_and_a_cancel_reaches_it(
    client: TestClient, settings: Settings
) -> None:
    load(client, "bench-a")
    (run,) = start(client, LONG, "bench-a")
    wait_until(lambda: running(client, run["run_id"]), 30, what="progress from the run")
    (worker,) = workers()
    assert worker.pid != os.getpid()
    # The spec (with any server key) went through a pipe: the command line names nothing else.
    assert worker.cmdline() == list(COMMAND)
    assert stored_pid(settings, run["run_id"]) == worker.pid
    assert client.post(f"/api/benchmarks/{run['run_id']}/cancel").status_code == 202
    done = finished(client, run["run_id"])
    assert (done["status"], done["error"]) == ("partial", "cancelled")
    worker.wait(timeout=10)  # it ends once its run is saved
    events = client.get("/api/events", params={"model": "bench-a"}).json()["events"]
    mine = [e["type"] for e in events if e["payload"].get("run_id") == run["run_id"]]
    assert mine == ["BenchmarkFinished", "BenchmarkStarted"]  # newest first


def _hog_the_gil(stop: threading.Event) -> None:
    # A page script or the reconciler busy in Python, as a watched Benchmark page was: it holds
    # the app's GIL in 5 ms turns. Niced, so what it costs the machine's CPUs stays small.
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    while not stop.is_set():
        sum(range(1000))


def test_the_apps_busy_threads_do_not_void_the_measurement(client: TestClient) -> None:
    load(client, "bench-a")
    stop = threading.Event()
    hog = threading.Thread(target=_hog_the_gil, args=(stop,), daemon=True)
    hog.start()
    try:
        (run,) = start(client, STEADY, "bench-a")
        done = finished(client, run["run_id"], timeout_s=90)
    finally:
        stop.set()
        hog.join()
    assert done["status"] == "complete", done["error"]
    for health in done["health"]:
        assert health["valid"], done["health"]
        assert health["lag_p99_ms"] <= 5.0


def test_a_killed_run_process_leaves_a_partial_run_and_the_queue_goes_on(client: TestClient) -> None:
    load(client, "bench-a")
    # 16 requests of 128 tokens at 400 tokens/s: ~5 s at concurrency 1, then ~2.5 s at 2.
    two_levels = {**LONG, "concurrency": [1, 2], "requests_per_level": 16, "output_tokens": {"mean": 128}}
    (doomed,) = start(client, two_levels, "bench-a")
    (queued,) = start(client, TINY, "bench-a")

    def second_level() -> bool:
        body = client.get(f"/api/benchmarks/{doomed['run_id']}").json()
        return len(body["progress"]) >= 2  # the first level ended, so its requests are saved

    wait_until(second_level, 60, what="the run's second level")
    (worker,) = workers()
    worker.kill()
    done = finished(client, doomed["run_id"])
    assert done["status"] == "partial"
    assert "the benchmark process ended without a result (exit code -9)" in done["error"]
    saved = client.get(f"/api/benchmarks/{doomed['run_id']}/export", params={"format": "json"}).json()
    assert len([r for r in saved["requests"] if r["level"] == 0 and not r["warmup"]]) == 16
    assert finished(client, queued["run_id"])["status"] in ("complete", "invalid")


def test_a_run_process_that_cannot_store_its_run_fails_with_its_reason(tmp_path: Path) -> None:
    # An empty database: the process can't record the run, so it ends with a traceback and no
    # result; the app's side says why, from the process's own last words.
    spec = RunSpec(
        "deadbeef0001",
        f"sqlite:///{tmp_path / 'empty.db'}",
        Target("http://127.0.0.1:9", "nothing"),
        SweepWorkload(concurrency=[1], requests_per_level=1),
        {},
    )
    progress: list[dict[str, Any]] = []
    audit = _Audit()
    ended = RunProcess(
        spec, audit=audit, runs=_Runs(), on_progress=progress.append, cancel=CancelToken()
    ).run()
    assert ended.status == "failed"
    assert ended.error is not None
    assert ended.error.startswith("the benchmark process ended without a result (exit code 1)")
    assert "benchmark_runs" in ended.error  # the store's complaint: no such table
    assert (progress, audit.events) == ([], [])


class _Audit:
    def __init__(self) -> None:
        self.events: list[object] = []

    def record_benchmark(self, model_id: str, event: object, actor: str = "benchmark") -> None:
        self.events.append((model_id, event))


class _Runs:
    def mark_interrupted(self, run_ids: Any = None, reason: str = "") -> int:
        return 0  # the run was never stored
