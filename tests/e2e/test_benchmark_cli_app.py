"""The benchmark command line beside the running app, as a user runs both: ``--load`` asks the
app to load the model, the run is stored in the app's database and its start and end land in
the model's audit stream between the load and the app's shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.benchmark_store import BenchmarkStore
from db.session import make_engine
from tests.catalogs import sim_process
from tests.e2e.app_process import CLEAN_EXIT, SHUTDOWN_BUDGET_S, AppFiles, app_files, start_app
from tests.support import REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def files(tmp_path: Path) -> Iterator[AppFiles]:
    with app_files(tmp_path, sim_process("sim-bench", free_port())) as owned:
        yield owned


def test_load_through_the_app_then_benchmark_and_audit(files: AppFiles, tmp_path: Path) -> None:
    app = start_app(files)
    try:
        out = tmp_path / "out.json"
        argv = [sys.executable, "-m", "benchmark", "sweep", "--model", "sim-bench", "--load"]
        argv += ["--concurrency", "1,2", "--requests", "6", "--isl", "16", "--osl", "8", "--json", str(out)]
        done = subprocess.run(
            argv, cwd=REPO_ROOT, env=files.env(), capture_output=True, text=True, timeout=120
        )
        # 0 complete, 1 saved but not complete (a shared machine can make the runner's own lag
        # invalidate a level); either way the run happened and was stored.
        assert done.returncode in (0, 1), done.stderr
        result = json.loads(out.read_text())
        assert result["status"] in ("complete", "invalid"), result
        assert [level["completed"] for level in result["levels"]] == [6, 6]
        assert app.model("sim-bench")["status"].startswith("Loaded"), app.model("sim-bench")
        listed = subprocess.run(
            [sys.executable, "-m", "benchmark", "list"], cwd=REPO_ROOT, env=files.env(), capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert result["run_id"] in listed.stdout
        types = [e.type for e in files.events("sim-bench")]
        assert (
            types.index("ReadyObserved") < types.index("BenchmarkStarted") < types.index("BenchmarkFinished")
        )
        (finished,) = [e for e in files.events("sim-bench") if e.type == "BenchmarkFinished"]
        assert finished.event.payload()["run_id"] == result["run_id"]
        assert finished.actor == "benchmark"
    finally:
        assert app.signal(signal.SIGTERM, SHUTDOWN_BUDGET_S) in CLEAN_EXIT, app.output()


def test_sigterm_during_a_run_saves_it_as_partial_and_still_stops_every_server_in_time(
    files: AppFiles,
) -> None:
    app = start_app(files)
    app.load("sim-bench")
    workload = {
        "kind": "sweep",
        "concurrency": [2],
        "requests_per_level": 5000,
        "output_tokens": {"mean": 64},
    }
    answer = app.client.post("/api/benchmarks", json={"models": ["sim-bench"], "workload": workload})
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["runs"][0]["run_id"]
    wait_until(
        lambda: app.client.get(f"/api/benchmarks/{run_id}").json().get("progress"), 30, what="progress"
    )
    started = time.monotonic()
    assert app.signal(signal.SIGTERM, SHUTDOWN_BUDGET_S) in CLEAN_EXIT, app.output()
    wait_until(
        lambda: not files.servers(), SHUTDOWN_BUDGET_S - (time.monotonic() - started), what="no servers"
    )
    engine = make_engine(files.db_url)
    try:
        stored = BenchmarkStore(engine).get(run_id, with_requests=False)
    finally:
        engine.dispose()
    assert stored is not None
    assert (stored.status, stored.error) == ("partial", "cancelled")
    assert sum(level["completed"] or 0 for level in stored.results["levels"]) > 0
    types = [e.type for e in files.events("sim-bench")]
    # The run was closed while its server still ran; then the shutdown stopped the server.
    assert types.index("BenchmarkFinished") < len(types) - 1 - types[::-1].index("Stopped")
