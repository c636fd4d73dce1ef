"""A run left 'running' by a process that died is closed as partial; a live one's is left alone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmark.host import host_facts
from benchmark.orphans import close_orphans_at
from benchmark.records import RunRecord, RunStatus
from db.benchmark_store import INTERRUPTED, BenchmarkStore
from db.migrate import upgrade_to_head
from db.session import make_engine


def run_of(run_id: str, pid: int, hostname: str | None = None) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        kind="sweep",
        base_url="http://127.0.0.1:1",
        workload={},
        started_at=time.time(),
        host={**host_facts(), "pid": pid, **({"hostname": hostname} if hostname else {})},
    )


def test_only_runs_whose_process_died_are_closed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    upgrade_to_head(url)
    store = BenchmarkStore(make_engine(url))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        store.create(run_of("deadrun", int(dead.stdout)))
        store.create(run_of("liverun", live.pid))
        # Another machine's pid says nothing about processes here.
        store.create(run_of("otherhost", int(dead.stdout), hostname="elsewhere"))
        assert close_orphans_at(url) == 1
        dead_run, live_run = store.get("deadrun"), store.get("liverun")
        assert dead_run is not None
        assert (dead_run.status, dead_run.error) == (RunStatus.PARTIAL, INTERRUPTED)
        assert live_run is not None
        assert live_run.status == RunStatus.RUNNING
        other = store.get("otherhost")
        assert other is not None
        assert other.status == RunStatus.RUNNING
    finally:
        live.communicate(b"")
