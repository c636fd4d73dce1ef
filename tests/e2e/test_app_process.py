"""The whole app as a user runs it: ``streamlit run app.py`` in its own process, signals included.

Each test gets its own database, catalog, logs, instance name and port. The servers the app
starts are found the way its own adoption finds them (the instance marker in a process's
environment, the instance label on a container), so nothing else on the machine is touched,
and whatever a failed test leaves behind is removed afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from db.session import make_engine
from db.store import EventStore
from lifecycle.events import RecordedEvent, model_stream
from lifecycle.runtimes.containers import LABEL_INSTANCE
from lifecycle.runtimes.process import INSTANCE_ENV, MODEL_ENV
from tests.catalogs import REPO_ROOT, sim_compose, sim_process, write_catalog
from tests.support import free_port, wait_until

START_TIMEOUT_S = 60
LOAD_TIMEOUT_S = 60
# What a user may wait after SIGTERM for the app and every server it started to be gone.
SHUTDOWN_BUDGET_S = 15
# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal: -15 is a clean exit.
CLEAN_EXIT = (0, -signal.SIGTERM)


@dataclass
class AppFiles:
    """Everything one app instance keeps across its restarts."""

    root: Path
    instance: str
    port: int
    catalog: Path
    runs: int = 0
    docker: Any = None

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.root / 'dxg.db'}"

    def env(self, **extra: str) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DXG_", "STREAMLIT_"))}
        return {
            **inherited,
            "DXG_CATALOG": str(self.catalog),
            "DXG_DB_URL": self.db_url,
            "DXG_LOG_DIR": str(self.root / "logs"),
            "DXG_RUN_DIR": str(self.root / "run"),
            "DXG_INSTANCE": self.instance,
            "DXG_HOST": "127.0.0.1",
            "DXG_PORT": str(self.port),
            "DXG_TICK_S": "0.2",
            "DXG_FAST_TICK_S": "0.05",
            "DXG_STOP_GRACE_S": "5",
            **extra,
        }

    def events(self, model_id: str) -> list[RecordedEvent]:
        engine = make_engine(self.db_url)
        try:
            return EventStore(engine).read_stream(model_stream(model_id))
        finally:
            engine.dispose()

    def server_processes(self) -> list[psutil.Process]:
        """Live model servers of this instance: the markers the process runtime sets (the app
        itself carries the instance but no model)."""
        found = []
        for proc in psutil.process_iter():
            try:
                environ = proc.environ()
                mine = environ.get(INSTANCE_ENV) == self.instance and MODEL_ENV in environ
                if mine and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def containers(self) -> list[Any]:
        if self.docker is None:
            return []
        return self.docker.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={self.instance}"})

    def servers(self) -> set[str]:
        """pid:<n> / container:<id> of every server of this instance that exists right now."""
        return {f"pid:{p.pid}" for p in self.server_processes()} | {
            f"container:{c.id}" for c in self.containers()
        }


@dataclass
class RunningApp:
    proc: subprocess.Popen[bytes]
    log: Path
    base_url: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=LOAD_TIMEOUT_S + 10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the app exited with {self.proc.returncode}:\n{self.output()}")
        try:
            core = self.client.get("/_stcore/health", timeout=2)
            api = self.client.get("/api/health", timeout=2)
        except httpx.HTTPError:
            return False
        return core.status_code == 200 and "ok" in api.json()

    def load(self, model_id: str) -> dict[str, Any]:
        response = self.client.post(f"/api/models/{model_id}/load?wait=true&timeout_s={LOAD_TIMEOUT_S}")
        assert response.status_code == 200, f"{response.text}\n{self.output()}"
        return response.json()

    def model(self, model_id: str) -> dict[str, Any]:
        return self.client.get(f"/api/models/{model_id}").json()

    def signal(self, signum: signal.Signals, timeout_s: float) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the app outlived {signum.name} by {timeout_s}s:\n{self.output()}"
            ) from None
        finally:
            self.client.close()


def launch(files: AppFiles, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    files.runs += 1
    log = files.root / f"app-{files.runs}.log"
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def streamlit_argv(address: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
        "--server.address", address, "--server.port", str(port),
    ]  # fmt: skip


def start_app(files: AppFiles) -> RunningApp:
    proc = launch(files, streamlit_argv("127.0.0.1", files.port), files.env())
    app = RunningApp(proc, files.root / f"app-{files.runs}.log", f"http://127.0.0.1:{files.port}")
    wait_until(app.healthy, START_TIMEOUT_S, interval_s=0.1, what="the app to answer")
    return app


@pytest.fixture
def files(tmp_path: Path) -> Iterator[AppFiles]:
    app_files = AppFiles(
        root=tmp_path,
        instance=f"e2e-{uuid.uuid4().hex[:8]}",
        port=free_port(),
        catalog=write_catalog(
            tmp_path / "models.yaml",
            sim_process("sim-p", free_port()),
            sim_process("sim-slow", free_port(), startup_s=120),
        ),
    )
    yield app_files
    # Whatever a failed test left: apps first (they would restart servers), then the servers.
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(INSTANCE_ENV) == app_files.instance:
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    for container in app_files.containers():
        container.remove(force=True)


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


def count(events: list[RecordedEvent], type_name: str) -> int:
    return sum(1 for e in events if e.type == type_name)


@pytest.mark.slow
@pytest.mark.parametrize("runtimes", ["process", pytest.param("process+compose", marks=pytest.mark.docker)])
def test_sigterm_stops_everything_and_a_sigkilled_app_is_adopted(
    files: AppFiles, runtimes: str, request: pytest.FixtureRequest
) -> None:
    models = ["sim-p"]
    if runtimes == "process+compose":
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
