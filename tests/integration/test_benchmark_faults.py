"""A benchmark when things go wrong: the model is unloaded mid-run, the user cancels, the server
hangs. Nothing hangs, failures are counted, and the run is saved as partial with the reason.
Also: a run through the lifecycle service lands in the model's audit stream."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from benchmark.execute import Job, execute
from benchmark.loop_health import CancelToken
from benchmark.records import RunStatus
from benchmark.runner import Progress, ProgressFn
from benchmark.server_info import discover
from benchmark.targets import catalog_entry, model_target
from benchmark.workload import LengthSpec, Sampling, SweepWorkload
from db.benchmark_store import BenchmarkStore
from lifecycle.core.events import BenchmarkFinished, BenchmarkStarted
from settings import Settings
from tests.catalogs import write_catalog
from tests.integration.lifecycle_env import make_settings, of_type, running_service, sim_model, types
from tests.support import simulator

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    return tmp_path / "models.yaml"


def long_sweep(**sampling: float) -> SweepWorkload:
    """Enough work that the run is surely still going when the fault comes."""
    return SweepWorkload(
        concurrency=[4, 8],
        requests_per_level=400,
        input_tokens=LengthSpec(mean=16),
        output_tokens=LengthSpec(mean=64),
        sampling=Sampling(**sampling),
    )


def after_requests(count: int, action: threading.Event) -> ProgressFn:
    """A progress callback that sets ``action`` once ``count`` requests have been measured."""

    def progress(update: Progress) -> None:
        if update.done >= count:
            action.set()

    return progress


def test_a_model_unloaded_mid_run_is_counted_and_the_run_saved_as_partial(
    settings: Settings, catalog_path: Path, benchmark_store: BenchmarkStore
) -> None:
    write_catalog(catalog_path, sim_model("bench-a", "--tokens-per-s", "200"))
    with running_service(make_settings(settings, catalog_path)) as service:
        service.load("bench-a")
        assert service.wait("bench-a", "ready", 20).loaded
        target, meta = model_target(service, "bench-a")
        halfway = threading.Event()

        def unload_when_halfway() -> None:
            if halfway.wait(60):
                service.unload("bench-a", actor="test")

        unloader = threading.Thread(target=unload_when_halfway, daemon=True)
        unloader.start()
        job = Job(target, long_sweep(timeout_s=10), meta, catalog_entry(service, "bench-a"))
        run = execute(job, benchmark_store, service, progress=after_requests(6, halfway))
        unloader.join(10)
        assert run.status == RunStatus.PARTIAL, (run.status, run.error)
        assert "stopped answering" in (run.error or ""), run.error
        level = run.results["levels"][0]
        assert level["completed"] >= 6
        assert level["errors"] >= 1, level  # the streams cut by the unload, and the refused sends
        assert set(level["error_classes"]) <= {"StreamInterrupted", "ServerUnreachable"}, level[
            "error_classes"
        ]
        stored = benchmark_store.get(run.run_id)
        assert stored is not None
        assert stored.status == RunStatus.PARTIAL
        assert len(stored.requests) == len(run.requests)  # everything measured was kept
        # The audit stream tells the story in order: loaded, measured, unloaded, measurement ended.
        started = of_type(service, "bench-a", BenchmarkStarted)
        finished = of_type(service, "bench-a", BenchmarkFinished)
        assert [e.run_id for e in started] == [run.run_id] == [e.run_id for e in finished]
        assert finished[0].status == RunStatus.PARTIAL
        stream = types(service, "bench-a")
        assert (
            stream.index("ReadyObserved") < stream.index("BenchmarkStarted") < stream.index("UnloadRequested")
        )
        assert stream.index("BenchmarkFinished") > stream.index("BenchmarkStarted")
        # The catalog entry stored with the run is the one measured, secrets masked.
        assert stored.catalog_entry is not None
        assert stored.catalog_entry["id"] == "bench-a"


def test_a_cancelled_run_stops_promptly_and_is_saved_as_partial(benchmark_store: BenchmarkStore) -> None:
    with simulator("llamacpp", "cancel-me", "--ttft-ms", "5", "--tokens-per-s", "100") as sim:
        sim.wait_event("ready")
        target, meta = discover(sim.base_url)
        token, reached = CancelToken(), threading.Event()
        canceller = threading.Thread(target=lambda: reached.wait(60) and token.cancel(), daemon=True)
        canceller.start()
        run = execute(
            Job(target, long_sweep(), meta),
            benchmark_store,
            progress=after_requests(8, reached),
            cancel=token,
        )
    assert run.status == RunStatus.PARTIAL
    assert run.error == "cancelled"
    (first, second) = run.results["levels"]
    assert first["completed"] >= 8
    assert first["completed"] < 400
    assert second["n"] == 0  # the second level never began
    # Streams cut by the cancel say nothing about the server: kept, but not counted as its errors.
    assert first["errors"] == 0, first["error_classes"]
    assert run.results["cancelled_requests"] >= 1
    stored = benchmark_store.get(run.run_id)
    assert stored is not None
    assert stored.status == RunStatus.PARTIAL
    assert stored.ended_at is not None


def test_a_server_that_stops_sending_times_out_instead_of_hanging(benchmark_store: BenchmarkStore) -> None:
    with simulator("vllm", "hangs", "--ttft-ms", "5", "--tokens-per-s", "100") as sim:
        sim.wait_event("ready")
        target, meta = discover(sim.base_url)
        stopped = threading.Event()

        def freeze_when_running() -> None:
            if stopped.wait(60):
                sim.proc.send_signal(19)  # SIGSTOP: the process keeps its sockets and says nothing

        threading.Thread(target=freeze_when_running, daemon=True).start()
        try:
            workload = long_sweep(timeout_s=1.0)
            run = execute(Job(target, workload, meta), benchmark_store, progress=after_requests(4, stopped))
        finally:
            sim.proc.send_signal(18)  # SIGCONT, so the fixture can stop it
    level = run.results["levels"][0]
    assert level["error_classes"].get("Timeout", 0) >= 1, level["error_classes"]
    assert run.status in (RunStatus.PARTIAL, RunStatus.COMPLETE, RunStatus.INVALID)
    stored = benchmark_store.get(run.run_id)
    assert stored is not None
    assert stored.status == run.status
