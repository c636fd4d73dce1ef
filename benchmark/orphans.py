"""Runs left 'running' by a process that died (a killed CLI, a hard-killed app) become partial.

A run records the process that measures it (host name and pid). A run still
marked running whose process is gone on this host can never finish, so it is
closed with what it saved. Runs of other hosts, and of live processes (the app
or a CLI benchmarking right now), are left alone.
"""

from __future__ import annotations

import os
import platform

import psutil

from benchmark.records import RunRecord, RunStatus
from db.benchmark_store import BenchmarkStore
from db.session import make_engine


def owner(run: RunRecord) -> tuple[str | None, int | None]:
    pid = run.host.get("pid")
    return run.host.get("hostname"), pid if isinstance(pid, int) else None


def _process_alive(pid: int, since: float) -> bool:
    try:
        process = psutil.Process(pid)
        # A recycled pid belongs to a process started after the run began.
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= since + 1.0
    except psutil.NoSuchProcess:
        return False


def orphaned(run: RunRecord) -> bool:
    host, pid = owner(run)
    if run.status != RunStatus.RUNNING or host != platform.node() or pid is None or pid == os.getpid():
        return False
    return not _process_alive(pid, run.started_at)


def close_orphans(store: BenchmarkStore) -> int:
    """Mark this host's orphaned runs partial; returns how many."""
    ids = [run.run_id for run in store.list(status=RunStatus.RUNNING, limit=1000) if orphaned(run)]
    return store.mark_interrupted(ids) if ids else 0


def close_orphans_at(db_url: str) -> int:
    """``close_orphans`` on the database at ``db_url`` (the app calls it once at start)."""
    engine = make_engine(db_url)
    try:
        return close_orphans(BenchmarkStore(engine))
    finally:
        engine.dispose()
