"""The lifecycle service as the app uses it: start and shutdown, adoption after a hard kill,
catalog edits while running, and the answers UI and API get for bad requests.

A hard kill is real: the first app instance runs in a child process that is SIGKILLed, so
nothing of it survives but its servers, its pidfiles and its database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lifecycle.core.events import (
    APP_STREAM,
    Adopted,
    AppStarted,
    AppStopped,
    StartIssued,
    Stopped,
    UnloadRequested,
    model_stream,
)
from lifecycle.core.planner import UNWANTED
from lifecycle.service import CannotLoad, InvalidRequest, LifecycleService, UnknownModel
from settings import Settings
from tests.catalogs import write_catalog
from tests.integration.lifecycle_env import (
    FAST,
    desired,
    make_settings,
    of_type,
    pid_gone,
    running_service,
    servers_of,
    sim_model,
    types,
    wait_for_count,
    wait_passes,
)
from tests.support import REPO_ROOT, free_port, wait_until

# The first app instance: start, load a model, say so once it is ready, then run until killed.
APP_SCRIPT = """
import sys, threading
from settings import Settings
from lifecycle.service import LifecycleService
service = LifecycleService(Settings())
service.start()
service.load(sys.argv[1], actor="cli")
print(service.wait(sys.argv[1], "ready", 30).phase, flush=True)
threading.Event().wait()
"""


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    return tmp_path / "models.yaml"


def kill_hard_after_ready(settings: Settings, model_id: str) -> int:
    """Run an app instance that loads ``model_id``, SIGKILL it once ready; the server's pid."""
    env = {
        **os.environ,
        "DXG_DB_URL": settings.db_url,
        "DXG_CATALOG": str(settings.catalog),
        "DXG_LOG_DIR": str(settings.log_dir),
        "DXG_RUN_DIR": str(settings.run_dir),
        "DXG_INSTANCE": settings.instance,
        **{f"DXG_{key.upper()}": str(value) for key, value in FAST.items()},
    }
    app = subprocess.Popen(
        [sys.executable, "-c", APP_SCRIPT, model_id],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == "ready"
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(10)
    (server,) = servers_of(settings, model_id)
    return server.pid


# --- start and shutdown --------------------------------------------------------------------------


def test_shutdown_stops_every_server_and_records_it(settings: Settings, catalog_path: Path) -> None:
    write_catalog(catalog_path, sim_model("sim-a"), sim_model("sim-b"), sim_model("sim-c"))
    with running_service(make_settings(settings, catalog_path)) as service:
        service.load("sim-a")
        service.load("sim-b")
        assert service.wait("sim-a", "ready", 20).loaded
        assert service.wait("sim-b", "ready", 20).loaded
        pids = [int(of_type(service, m, StartIssued)[0].handle["ref"]) for m in ("sim-a", "sim-b")]
        assert service.health()["scheduler_running"] is True
    for model_id in ("sim-a", "sim-b"):
        assert types(service, model_id)[-3:] == ["UnloadRequested", "StopIssued", "Stopped"]
        assert of_type(service, model_id, UnloadRequested)[-1].reason == "shutdown"
        assert of_type(service, model_id, Stopped)[-1].reason == "shutdown"
        assert servers_of(service.settings, model_id) == []
    assert all(pid_gone(pid) for pid in pids)
    assert types(service, "sim-c") == []
    app_events = [e.event for e in service.store.read_stream(APP_STREAM)]
    assert isinstance(app_events[0], AppStarted)
    assert app_events[-1] == AppStopped(reason="shutdown")
    assert service.health()["scheduler_running"] is False


def test_a_hard_killed_app_is_followed_by_one_that_adopts_it(settings: Settings, catalog_path: Path) -> None:
    write_catalog(catalog_path, sim_model("sim-a"))
    settings = make_settings(settings, catalog_path)
    pid = kill_hard_after_ready(settings, "sim-a")
    with running_service(settings) as service:
        wait_for_count(service, "sim-a", "Adopted", 1, timeout_s=20)
        (adopted,) = of_type(service, "sim-a", Adopted)
        assert adopted.handle["ref"] == str(pid)
        assert adopted.ready is True
        assert service.status_of("sim-a").loaded
        wait_passes(service, 5)
        assert types(service, "sim-a").count("StartIssued") == 1, "adopted, never started again"
        assert [p.pid for p in servers_of(settings, "sim-a")] == [pid]
    assert pid_gone(pid)
    assert of_type(service, "sim-a", Stopped)[-1].reason == "shutdown"


@pytest.mark.parametrize("why", ["unloaded", "removed from the catalog"])
def test_a_leftover_server_no_longer_wanted_is_stopped_at_start(
    settings: Settings, catalog_path: Path, why: str
) -> None:
    write_catalog(catalog_path, sim_model("sim-a"), sim_model("sim-b"))
    settings = make_settings(settings, catalog_path)
    pid = kill_hard_after_ready(settings, "sim-a")
    if why == "unloaded":
        # The user's unload was recorded, then the app died before the server was stopped.
        store = LifecycleService(settings).store
        stream = model_stream("sim-a")
        store.append(stream, [UnloadRequested()], store.current_version(stream), "ui")
    else:
        write_catalog(catalog_path, sim_model("sim-b"))
    with running_service(settings) as service:
        wait_until(lambda: pid_gone(pid), 20, what="the leftover server to be stopped")
        wait_for_count(service, "sim-a", "Stopped", 1, timeout_s=20)
        seen = types(service, "sim-a")
        stop = seen.index("StopIssued")
        assert seen[stop : stop + 2] == ["StopIssued", "Stopped"]
        assert of_type(service, "sim-a", Stopped)[-1].reason == UNWANTED
        # Either way the model ends up not wanted (a removed one is unloaded by the reconciler).
        wait_until(lambda: desired(service, "sim-a") == "unloaded", 10, what="sim-a unloaded")
        assert "Adopted" not in types(service, "sim-a")
        assert servers_of(settings, "sim-a") == []


def test_keep_running_on_exit_leaves_servers_for_the_next_run(settings: Settings, catalog_path: Path) -> None:
    write_catalog(catalog_path, sim_model("sim-a"))
    keep = make_settings(settings, catalog_path, keep_running_on_exit=True)
    with running_service(keep) as first:
        first.load("sim-a")
        assert first.wait("sim-a", "ready", 20).loaded
    (server,) = servers_of(keep, "sim-a")
    assert of_type(first, "sim-a", Stopped) == []
    assert first.store.read_stream(APP_STREAM)[-1].event == AppStopped(
        reason="shutdown, servers left running"
    )
    with running_service(make_settings(settings, catalog_path)) as second:
        wait_for_count(second, "sim-a", "Adopted", 1, timeout_s=20)
        assert [p.pid for p in servers_of(keep, "sim-a")] == [server.pid]
    assert pid_gone(server.pid)


# --- catalog edits while running -----------------------------------------------------------------


def test_catalog_edits_while_running(settings: Settings, catalog_path: Path) -> None:
    a, b = sim_model("sim-a"), sim_model("sim-b")
    write_catalog(catalog_path, a)
    with running_service(make_settings(settings, catalog_path)) as service:
        assert [m.id for m in service.status()] == ["sim-a"]
        service.load("sim-a")
        assert service.wait("sim-a", "ready", 20).loaded
        pid = int(of_type(service, "sim-a", StartIssued)[0].handle["ref"])

        # A new model appears without a restart.
        write_catalog(catalog_path, a, b)
        wait_until(lambda: [m.id for m in service.status()] == ["sim-a", "sim-b"], 10, what="sim-b to appear")

        # A broken edit keeps the models and says where the problem is.
        broken = dict(b, engine="tgi")
        write_catalog(catalog_path, a, broken)
        wait_until(lambda: service.catalog_error is not None, 10, what="the catalog error")
        error = service.catalog_error
        assert error is not None
        assert str(catalog_path) in error
        assert "sim-b" in error
        assert "engine" in error
        assert [m.id for m in service.status()] == ["sim-a", "sim-b"]
        health = service.health()
        assert health["ok"] is False
        assert health["catalog"]["error"] == error
        assert service.status_of("sim-a").loaded

        # Removing a running model stops it and says why.
        write_catalog(catalog_path, b)
        wait_until(lambda: service.catalog_error is None, 10, what="the fixed catalog")
        wait_for_count(service, "sim-a", "Stopped", 1, timeout_s=20)
        assert types(service, "sim-a")[-3:] == ["UnloadRequested", "StopIssued", "Stopped"]
        assert of_type(service, "sim-a", UnloadRequested)[-1].reason == "removed"
        assert of_type(service, "sim-a", Stopped)[-1].reason == "removed"
        assert pid_gone(pid)
        assert [m.id for m in service.status()] == ["sim-b"]
        assert service.health()["ok"] is True
        # Its history stays readable.
        assert service.history("sim-a")[0].type == "Stopped"


def test_a_broken_catalog_at_start_starts_empty_and_recovers(settings: Settings, catalog_path: Path) -> None:
    catalog_path.write_text("models:\n  - id: sim-a\n    url: nowhere\n", encoding="utf-8")
    with running_service(make_settings(settings, catalog_path)) as service:
        assert service.status() == []
        error = service.catalog_error
        assert error is not None
        assert str(catalog_path) in error
        assert "sim-a" in error
        assert "url" in error
        assert service.health()["ok"] is False
        with pytest.raises(UnknownModel):
            service.load("sim-a")
        write_catalog(catalog_path, sim_model("sim-a"))
        wait_until(lambda: [m.id for m in service.status()] == ["sim-a"], 10, what="the repaired catalog")
        assert service.catalog_error is None
        service.load("sim-a")
        assert service.wait("sim-a", "ready", 20).loaded


# --- answers to bad requests, reads --------------------------------------------------------------


@pytest.fixture
def service(settings: Settings, catalog_path: Path) -> Iterator[LifecycleService]:
    port = free_port()
    external: dict[str, Any] = {
        "id": "ext",
        "url": f"http://127.0.0.1:{free_port()}",
        "engine": "openai",
        "runtime": "external",
        "manual_start": "ssh gpu-box ./serve.sh",
    }
    write_catalog(catalog_path, sim_model("sim-a"), sim_model("busy", port=port), external)
    with running_service(make_settings(settings, catalog_path)) as started:
        yield started


def test_unknown_models_are_refused(service: LifecycleService) -> None:
    for call in (service.load, service.unload, service.status_of, service.logs, service.history):
        with pytest.raises(UnknownModel) as info:
            call("nope")  # type: ignore[operator]
        assert info.value.status_code == 404
        assert info.value.error == "unknown_model"
        assert "'nope'" in str(info.value)
        assert "sim-a" in str(info.value)


def test_external_models_say_how_they_are_started(service: LifecycleService) -> None:
    with pytest.raises(CannotLoad, match=r"ssh gpu-box \./serve\.sh") as info:
        service.load("ext")
    assert info.value.status_code == 409
    with pytest.raises(CannotLoad, match="does not stop"):
        service.unload("ext")
    status = service.status_of("ext")
    assert status.can_load is False
    assert status.manual_start == "ssh gpu-box ./serve.sh"
    assert status.status.startswith("Offline: external server not answering")
    assert types(service, "ext") == []


def test_an_offline_model_is_refused_with_the_reason(service: LifecycleService) -> None:
    spec = service.catalog["busy"]
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", spec.port))
        holder.listen()
        with pytest.raises(CannotLoad, match=f"port {spec.port} is already in use"):
            service.load("busy")
    assert types(service, "busy") == []


def test_commands_are_idempotent(service: LifecycleService) -> None:
    service.unload("sim-a")
    assert types(service, "sim-a") == []
    service.load("sim-a")
    service.load("sim-a")
    assert service.wait("sim-a", "ready", 20).loaded
    service.unload("sim-a")
    service.unload("sim-a", actor="api")
    assert service.wait("sim-a", "stopped", 20).phase == "stopped"
    assert types(service, "sim-a").count("LoadRequested") == 1
    assert types(service, "sim-a").count("UnloadRequested") == 1


def test_invalid_requests(service: LifecycleService) -> None:
    cases = [
        lambda: service.history("sim-a", limit=0),
        lambda: service.history(after=-1),
        lambda: service.logs("sim-a", tail=0),
        lambda: service.wait("sim-a", "gone", 1),  # type: ignore[arg-type]
        lambda: service.load("sim-a", actor=""),
    ]
    for case in cases:
        with pytest.raises(InvalidRequest) as info:
            case()
        assert info.value.status_code == 422


def test_history_logs_and_health(service: LifecycleService) -> None:
    service.load("sim-a", actor="api")
    service.wait("sim-a", "ready", 20)
    newest_first = service.history("sim-a")
    assert [e.type for e in newest_first] == ["ReadyObserved", "StartIssued", "LoadRequested"]
    everything = service.history()
    assert everything[-1].stream == APP_STREAM  # AppStarted came first
    feed = service.history(after=newest_first[-1].position)
    assert [e.type for e in feed] == ["StartIssued", "ReadyObserved"]
    assert "SIM_EVENT ready" in service.logs("sim-a", tail=50)
    health = service.health()
    assert health["ok"] is True
    assert health["instance"] == service.settings.instance
    assert health["catalog"]["models"] == 3
    assert set(health["docker"]) == {"reachable", "detail"}
    assert health["version"] == "0.1.0"
    statuses = {s.id: s for s in service.status()}
    assert statuses["sim-a"].to_json()["loaded"] is True
    assert statuses["busy"].to_json()["status"] == "Available (Not Loaded)"
