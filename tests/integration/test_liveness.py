"""A hung server (running, but answering nothing) is noticed, killed and restarted.

A real simulator process is frozen with SIGSTOP while it is ready: ``inspect`` still sees it
running, so only its health endpoint tells. Short liveness figures keep the test quick; the
detection time is printed as the figure users care about (freeze to ``Unhealthy``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from lifecycle.core.events import ReadyObserved, StartIssued, Unhealthy
from settings import Settings
from tests.catalogs import write_catalog
from tests.integration.lifecycle_env import (
    events,
    make_settings,
    of_type,
    running_service,
    sim_model,
    wait_for_count,
)
from tests.support import pid_alive, wait_until

PERIOD_S = 0.3
TIMEOUT_S = 0.5
FAILURES = 3
# Every probe of a frozen server runs to its timeout: FAILURES x (period + timeout), plus a
# loaded machine's slack.
DETECTION_BOUND_S = FAILURES * (PERIOD_S + TIMEOUT_S) + 2.0


@pytest.mark.slow
def test_a_frozen_server_is_found_unhealthy_killed_and_restarted(settings: Settings, tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "models.yaml", sim_model("sim-h", startup_s=0.2))
    figures = {"liveness_period_s": PERIOD_S, "liveness_timeout_s": TIMEOUT_S, "liveness_failures": FAILURES}
    with running_service(make_settings(settings, catalog, **figures)) as service:
        service.load("sim-h")
        assert service.wait("sim-h", "ready", timeout_s=20).loaded
        (first,) = of_type(service, "sim-h", StartIssued)
        pid = int(first.handle["ref"])
        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.time()
        try:
            # While the checks fail the dot turns amber and says why, before any restart.
            counting = wait_until(
                lambda: (s := service.status_of("sim-h")).status.startswith("Loaded, not answering") and s,
                DETECTION_BOUND_S,
                what="the 'not answering' status",
            )
            assert counting.dot == "orange"
            wait_for_count(service, "sim-h", "Unhealthy", 1, DETECTION_BOUND_S)
        finally:
            if pid_alive(pid):
                os.kill(pid, signal.SIGCONT)  # so a failed test leaves nothing frozen
        unhealthy = next(e for e in events(service, "sim-h") if isinstance(e.event, Unhealthy))
        detection_s = unhealthy.ts - frozen_at
        print(f"frozen -> Unhealthy in {detection_s:.2f} s (bound {DETECTION_BOUND_S:.1f} s)")
        assert detection_s < DETECTION_BOUND_S
        assert unhealthy.event.failures == FAILURES
        assert f"/health did not answer within {TIMEOUT_S:g}s" in unhealthy.event.reason
        wait_until(lambda: not pid_alive(pid), 10, what="the frozen server to be killed")
        wait_for_count(service, "sim-h", "ReadyObserved", 2, 30)
        starts = of_type(service, "sim-h", StartIssued)
        assert [s.attempt for s in starts] == [1, 2]
        assert starts[1].handle["ref"] != first.handle["ref"]
        kinds = [e.type for e in events(service, "sim-h")]
        assert kinds[kinds.index("Unhealthy") :][:4] == [
            "Unhealthy",
            "RestartScheduled",
            "StartIssued",
            "ReadyObserved",
        ]
        assert len(of_type(service, "sim-h", ReadyObserved)) == 2
        assert service.status_of("sim-h").status == "Loaded & Ready"
