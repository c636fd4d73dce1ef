"""The database lease on a real file: one holder at a time, named to the next; a holder killed
hard leaves nothing that blocks the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from db.lease import DatabaseInUse, InstanceLease
from tests.support import REPO_ROOT, wait_until

HOLDER = (
    "import sys, time; from db.lease import InstanceLease; "
    "lease = InstanceLease.acquire(sys.argv[1], '127.0.0.1:8123'); print('held', flush=True); time.sleep(60)"
)


def hold_in_another_process(db_url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_with_the_first_named(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'dxg.db'}"
    holder = hold_in_another_process(db_url)
    try:
        with pytest.raises(DatabaseInUse) as refused:
            InstanceLease.acquire(db_url, "127.0.0.1:9000")
        message = str(refused.value)
        assert f"pid {holder.pid} on {os.uname().nodename}, listening on 127.0.0.1:8123" in message
        assert str(tmp_path / "dxg.db") in message
    finally:
        holder.kill()
        holder.wait()


def test_a_hard_killed_holder_leaves_a_lease_the_next_start_takes(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'dxg.db'}"
    holder = hold_in_another_process(db_url)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lease = wait_until(lambda: InstanceLease.acquire(db_url, "127.0.0.1:9000"), 5, what="the lease")
    try:
        # Held again: the next one is refused and told who holds it now.
        with pytest.raises(DatabaseInUse, match=f"pid {os.getpid()} "):
            InstanceLease.acquire(db_url, "127.0.0.1:9001")
    finally:
        lease.release()
    InstanceLease.acquire(db_url, "127.0.0.1:9002").release()  # free after a clean release


def test_databases_without_a_file_get_no_lease() -> None:
    assert InstanceLease.acquire("sqlite://", "127.0.0.1:9000") is None
    assert InstanceLease.acquire("postgresql://db.example/dxg", "127.0.0.1:9000") is None
