"""The whole app as a user runs it: ``streamlit run app.py`` in its own process, signals included.

Each test gets its own database, catalog, logs, instance name and port. The servers the app
starts are found the way its own adoption finds them (the instance marker in a process's
environment, the instance label on a container), so nothing else on the machine is touched,
and whatever a failed test leaves behind is removed afterwards.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from lifecycle.core.events import RecordedEvent
from tests.catalogs import sim_compose, sim_process, write_catalog
from tests.e2e.app_process import (
    CLEAN_EXIT,
    LOAD_TIMEOUT_S,
    SHUTDOWN_BUDGET_S,
    START_TIMEOUT_S,
    AppFiles,
    RunningApp,
    app_files,
    launch,
    start_app,
    streamlit_argv,
)
from tests.support import free_port, wait_until


@pytest.fixture
def files(tmp_path: Path) -> Iterator[AppFiles]:
    models = sim_process("sim-p", free_port()), sim_process("sim-slow", free_port(), startup_s=120)
    with app_files(tmp_path, *models) as owned:
        yield owned


def with_compose(files: AppFiles, docker_client: Any) -> list[str]:
    files.docker = docker_client
    write_catalog(files.catalog, sim_process("sim-p", free_port()), sim_compose("sim-c", free_port()))
    return ["sim-p", "sim-c"]


def stop_and_check_clean(files: AppFiles, app: RunningApp, models: list[str]) -> None:
    """SIGTERM: the app exits, every server is gone within the budget, each stop is recorded."""
    started = time.monotonic()
    assert app.signal(signal.SIGTERM, SHUTDOWN_BUDGET_S) in CLEAN_EXIT, app.output()
    assert "lifecycle service stopped" in app.output()
    wait_until(
        lambda: not files.servers(), SHUTDOWN_BUDGET_S - (time.monotonic() - started), what="no servers"
    )
    for model_id in models:
        last = files.events(model_id)[-4:]
        assert any(e.type == "Stopped" and e.event.payload().get("reason") == "shutdown" for e in last), last


# uvicorn's exit status when the app's startup fails (here: the database's lease is taken).
INSTANCE_REFUSED = 3


def count(events: list[RecordedEvent], type_name: str) -> int:
    return sum(1 for e in events if e.type == type_name)


@pytest.mark.slow
@pytest.mark.parametrize("runtimes", ["process", pytest.param("process+compose", marks=pytest.mark.docker)])
def test_sigterm_stops_everything_and_a_sigkilled_app_is_adopted(
    files: AppFiles, runtimes: str, request: pytest.FixtureRequest
) -> None:
    models = ["sim-p"]
    if runtimes == "process+compose":
        request.getfixturevalue("compose_sim_image")  # a fresh machine has no image yet
        models = with_compose(files, request.getfixturevalue("docker_client"))

    # Load through the API, then SIGTERM: nothing may outlive the app.
    app = start_app(files)
    for model_id in models:
        app.load(model_id)
    assert len(files.servers()) == len(models)
    stop_and_check_clean(files, app, models)

    # Load again and SIGKILL: the servers keep running without the app ...
    app = start_app(files)
    for model_id in models:
        app.load(model_id)
    running = files.servers()
    assert len(running) == len(models)
    started_before = {m: count(files.events(m), "StartIssued") for m in models}
    assert app.signal(signal.SIGKILL, 10) == -signal.SIGKILL
    assert files.servers() == running

    # ... and the next start adopts them: the same servers, none started twice.
    app = start_app(files)
    for model_id in models:
        wait_until(lambda m=model_id: app.model(m)["loaded"], LOAD_TIMEOUT_S, what=f"{model_id} adopted")
        events = files.events(model_id)
        assert count(events, "Adopted") == 1, events
        assert count(events, "StartIssued") == started_before[model_id], events
    assert files.servers() == running
    stop_and_check_clean(files, app, models)


def test_sigterm_ends_a_waiting_request_instead_of_waiting_for_it(files: AppFiles) -> None:
    app = start_app(files)
    url = f"{app.base_url}/api/models/sim-slow/load?wait=true&timeout_s=600"
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(httpx.post, url, timeout=60)
        wait_until(
            lambda: app.model("sim-slow")["phase"] == "starting", START_TIMEOUT_S, what="sim-slow starting"
        )
        stop_and_check_clean(files, app, ["sim-slow"])
        answer = waiting.result(timeout=5)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "shutting_down"


def test_a_second_instance_on_the_same_database_is_refused_while_the_first_works(files: AppFiles) -> None:
    first = start_app(files)
    first.load("sim-p")
    started = files.servers()
    # The same database (and instance name), another port: what `make run` twice looks like.
    port = free_port()
    second = launch(files, streamlit_argv("127.0.0.1", port), files.env(DXG_PORT=str(port)))
    try:
        code = second.wait(timeout=START_TIMEOUT_S)
    finally:
        second.kill()
    output = (files.root / f"app-{files.runs}.log").read_text(errors="replace")
    assert code == INSTANCE_REFUSED, output
    assert f"another instance of the app uses the database {files.root / 'dxg.db'}" in output
    assert f"pid {first.proc.pid}" in output, output
    assert f"listening on 127.0.0.1:{files.port}" in output, output
    assert "DXG_DB_URL" in output
    # The first never noticed: its server runs on, nothing was recorded as crashed or started.
    assert files.servers() == started
    events = files.events("sim-p")
    assert [e.type for e in events].count("StartIssued") == 1, events
    assert "Crashed" not in {e.type for e in events}
    assert first.model("sim-p")["phase"] == "ready"
    stop_and_check_clean(files, first, ["sim-p"])


def test_refuses_to_listen_on_every_interface_without_a_token(files: AppFiles) -> None:
    argv = streamlit_argv("0.0.0.0", files.port)
    proc = launch(files, argv, files.env(DXG_HOST="0.0.0.0"))
    try:
        code = proc.wait(timeout=START_TIMEOUT_S)
    finally:
        proc.kill()
    output = (files.root / f"app-{files.runs}.log").read_text(errors="replace")
    assert code != 0, output
    assert "refusing to listen on '0.0.0.0' without an API token, because anyone" in output
    assert "DXG_API_TOKEN" in output
    assert not (files.root / "dxg.db").exists(), "nothing may start before the address is accepted"


def test_python_app_py_listens_where_dxg_host_and_port_say(files: AppFiles) -> None:
    proc = launch(files, [sys.executable, "app.py"], files.env())
    app = RunningApp(proc, files.root / f"app-{files.runs}.log", f"http://127.0.0.1:{files.port}")
    wait_until(app.healthy, START_TIMEOUT_S, interval_s=0.1, what="the app to answer on DXG_PORT")
    sockets = psutil.Process(proc.pid).net_connections()
    listening = {(c.laddr.ip, c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", files.port)}
    assert app.signal(signal.SIGTERM, SHUTDOWN_BUDGET_S) in CLEAN_EXIT
