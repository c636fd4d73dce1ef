"""The shell that runs pytest may carry the app's DXG_* settings (a developer's token, a second
database, keep-running-on-exit). None of them may reach a test: a sample of the suite runs in a
subprocess under hostile values and must pass exactly as it does in a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import REPO_ROOT, instance_processes

OUTER_INSTANCE = "outer-hostile"
HOSTILE = {
    "DXG_API_TOKEN": "outer-token-no-test-sends",  # every API call would be 401
    "DXG_KEEP_RUNNING_ON_EXIT": "true",  # servers would outlive their tests
    "DXG_DB_URL": "sqlite:////nonexistent-outer-dir/outer.db",
    "DXG_CATALOG": "/nonexistent-outer-dir/models.yaml",
    "DXG_LOG_DIR": "/proc/outer-logs",  # not writable
    "DXG_RUN_DIR": "/proc/outer-run",
    "DXG_HOST": "0.0.0.0",
    "DXG_PORT": "1",
    "DXG_INSTANCE": OUTER_INSTANCE,
    "DXG_RESTART_INITIAL_S": "999",
    "DXG_CRASH_LIMIT": "1",
    "DXG_STOP_GRACE_S": "0",
    "DXG_TICK_S": "100",
    "DXG_CATALOG_POLL_S": "100",
}
# One test of each kind that the leaked values above would break.
SAMPLE = [
    "tests/integration/test_api.py::test_models_lists_every_model_with_its_status_words",
    "tests/integration/test_api.py::test_load_wait_unload_wait_runs_and_stops_the_server",
    "tests/integration/test_service.py::test_shutdown_stops_every_server_and_records_it",
    "tests/integration/test_reconciler.py::test_a_crash_is_restarted_with_every_step_recorded",
    "tests/unit/test_runtime_advice.py::test_restart_defaults_have_one_source",
    "tests/unit/test_catalog.py",
]
INNER_TIMEOUT_S = 300


def test_outer_dxg_settings_reach_no_test() -> None:
    env = {**os.environ, **HOSTILE}
    # -p no:randomly: the sample's order is not what this test is about.
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *SAMPLE]
    result = subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=INNER_TIMEOUT_S, check=False
    )
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, tail
    assert " passed" in tail
    assert "skipped" not in tail, tail
    # No model server was started under the outer instance's name (the shell running pytest may
    # carry that name itself, so only servers count: they also carry a model marker).
    servers = instance_processes(OUTER_INSTANCE, servers_only=True)
    assert servers == [], [p.cmdline() for p in servers]
