"""The reliability suite's shared parts: the ``record`` fixture each scenario reports its figure
through, the table printed at the end of the session (also written as JSON), and the app
instances (in-process services and ``streamlit run`` processes) the scenarios start.

Every figure is recorded before its bound is asserted, so a scenario that misses its bound still
shows what it measured."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lifecycle.service import LifecycleService
from settings import Settings
from tests.catalogs import write_catalog
from tests.e2e.app_process import AppFiles
from tests.integration.container_support import remove_leftovers
from tests.integration.lifecycle_env import make_settings, running_service
from tests.support import REPO_ROOT, free_port, kill_instance

ARTIFACT = REPO_ROOT / "test-artifacts" / "reliability.json"
ServiceFactory = Callable[..., LifecycleService]


@dataclass
class Row:
    scenario: str
    outcome: str
    figure: dict[str, Any]
    test: str
    line: int  # where the test is defined: the table's order


ROWS_KEY = pytest.StashKey[list[Row]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[ROWS_KEY] = []


Record = Callable[[str, str, dict[str, Any]], None]


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Record:
    """``record(scenario, outcome, figure)``: one row of the closing table (a scenario recorded
    twice keeps its last row)."""
    rows = request.config.stash[ROWS_KEY]

    def add(scenario: str, outcome: str, figure: dict[str, Any]) -> None:
        rows[:] = [row for row in rows if row.scenario != scenario]
        _path, line, _name = request.node.location
        rows.append(Row(scenario, outcome, figure, request.node.nodeid, line or 0))

    return add


def _figure_text(figure: dict[str, Any]) -> str:
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in figure.items())


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    # One order whatever order the tests ran in (pytest-randomly): by file, then as the tests
    # stand in it, then as recorded.
    recorded = config.stash.get(ROWS_KEY, [])
    rows = sorted(recorded, key=lambda row: (row.test.split("::")[0], row.line, recorded.index(row)))
    if not rows:
        return
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scenarios": [
            {"scenario": r.scenario, "outcome": r.outcome, "figure": r.figure, "test": r.test} for r in rows
        ],
    }
    ARTIFACT.write_text(json.dumps(payload, indent=2) + "\n")
    width = max(len(row.scenario) for row in rows)
    outcome_width = max(len(row.outcome) for row in rows)
    terminalreporter.section("reliability: scenario -> outcome -> figure")
    for row in rows:
        terminalreporter.write_line(
            f"{row.scenario:<{width}}  {row.outcome:<{outcome_width}}  {_figure_text(row.figure)}"
        )
    terminalreporter.write_line(f"(also in {ARTIFACT.relative_to(REPO_ROOT)})")


@pytest.fixture
def service_with(settings: Settings, tmp_path: Path) -> Iterator[ServiceFactory]:
    """Start an in-process service over a catalog of the given models (and settings overrides);
    shut down afterwards, and any server of its instance killed even when the test failed."""
    with ExitStack() as stack:
        stack.callback(kill_instance, settings.instance)

        def make(*models: dict[str, Any], **overrides: Any) -> LifecycleService:
            catalog = write_catalog(tmp_path / "models.yaml", *models)
            return stack.enter_context(running_service(make_settings(settings, catalog, **overrides)))

        yield make


@pytest.fixture
def files(tmp_path: Path) -> Iterator[AppFiles]:
    """An app instance's files for ``streamlit run`` (the test writes the catalog); whatever a
    failed test leaves of the instance, processes and containers, is removed afterwards."""
    app_files = AppFiles(
        root=tmp_path,
        instance=f"rel-{uuid.uuid4().hex[:8]}",
        port=free_port(),
        catalog=tmp_path / "models.yaml",
    )
    yield app_files
    kill_instance(app_files.instance)
    if app_files.docker is not None:
        remove_leftovers(app_files.docker, [app_files.instance])
