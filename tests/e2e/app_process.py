"""Running the whole app as a user does: ``streamlit run app.py`` in its own process, with its
own database, catalog, logs, instance name and port. Shared by the process and browser tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from db.session import make_engine
from db.store import EventStore
from lifecycle.core.events import RecordedEvent, model_stream
from lifecycle.runtimes.container_labels import LABEL_INSTANCE
from tests.catalogs import write_catalog
from tests.support import REPO_ROOT, free_port, instance_processes, kill_instance, wait_until

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
        return instance_processes(self.instance, servers_only=True)

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

    def unload_all(self) -> None:
        """Unload every model that is wanted or still has a server, and wait until each is stopped."""
        for status in self.client.get("/api/models").json()["models"]:
            if status["can_load"] and (status["desired"] == "loaded" or status["phase"] != "stopped"):
                url = f"/api/models/{status['id']}/unload?wait=true&timeout_s={LOAD_TIMEOUT_S}"
                response = self.client.post(url)
                assert response.status_code == 200, f"{response.text}\n{self.output()}"

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


@contextmanager
def app_files(root: Path, *models: dict[str, Any]) -> Iterator[AppFiles]:
    """A fresh instance's files over a catalog of ``models``; afterwards, whatever a failed test
    left of that instance (servers, containers) is removed."""
    files = AppFiles(
        root=root,
        instance=f"e2e-{uuid.uuid4().hex[:8]}",
        port=free_port(),
        catalog=write_catalog(root / "models.yaml", *models),
    )
    yield files
    kill_instance(files.instance)
    for container in files.containers():
        container.remove(force=True)


def launch(files: AppFiles, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    files.runs += 1
    log = files.root / f"app-{files.runs}.log"
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def streamlit_argv(address: str, port: int) -> list[str]:
    # No file watcher: .streamlit/config.toml turns it off for every run, tests included.
    return [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
        "--server.address", address, "--server.port", str(port),
    ]  # fmt: skip


def start_app(files: AppFiles, **env: str) -> RunningApp:
    proc = launch(files, streamlit_argv("127.0.0.1", files.port), files.env(**env))
    app = RunningApp(proc, files.root / f"app-{files.runs}.log", f"http://127.0.0.1:{files.port}")
    wait_until(app.healthy, START_TIMEOUT_S, interval_s=0.1, what="the app to answer")
    return app
