"""Hostile and unlucky use of the API: hostile ids and parameters, cross-origin pages and rebound
DNS names against a real ``streamlit run`` app; an event store that refuses writes, and a server
that prints its secrets, against the app's API and lifespan served in-process."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

import service_access
from tests.app_harness import api_settings, serve
from tests.catalogs import leaking_process, sim_process, write_catalog
from tests.e2e.app_process import CLEAN_EXIT, SHUTDOWN_BUDGET_S, AppFiles, start_app
from tests.integration.test_api import HOSTILE_IDS, MODEL_ROUTES
from tests.integration.test_store_unwritable import refusing_writes
from tests.reliability.conftest import Record
from tests.support import free_port, instance_processes, pid_alive, wait_until

EXTRA_IDS: Final = ["%0a", "sim-h%0a", "sim-h%0d%0a", "%20", "sim-h%2Fload"]
HOSTILE_PARAMS: Final = [
    ("POST", "/api/models/sim-h/load?wait=maybe"),
    ("POST", "/api/models/sim-h/load?wait=true&timeout_s=nan"),
    ("POST", "/api/models/sim-h/load?wait=true&timeout_s=-1"),
    ("POST", "/api/models/sim-h/load?timeout_s=1e309"),
    ("POST", "/api/models/sim-h/unload?wait=%00"),
    ("GET", "/api/events?limit=99999999999999999999"),
    ("GET", "/api/events?after=-1"),
    ("GET", "/api/events?model=../../etc/passwd"),
    ("GET", "/api/models/sim-h/logs?tail=-5"),
    ("GET", "/api/models/sim-h/logs?tail=1&tail=9999999"),
    ("GET", "/API/models"),
    ("GET", "/api/MODELS"),
    ("GET", "/api/nothing-here"),
    ("GET", "/api/models/sim-h/load"),
]
CANARY: Final = "canary-5e1d2c3b4a697788"  # looks like nothing a pattern-based redaction knows


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def is_json(response: httpx.Response) -> bool:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return False
    try:
        response.json()
    except ValueError:
        return False
    return True


@pytest.mark.slow
def test_hostile_ids_parameters_and_cross_origin_requests(files: AppFiles, record: Record) -> None:
    write_catalog(files.catalog, sim_process("sim-h", free_port()))
    app = start_app(files)
    own = f"http://127.0.0.1:{files.port}"
    before = files_under(files.root)
    hostile = [
        (method, template.format(id=raw))
        for method, template in MODEL_ROUTES
        for raw in HOSTILE_IDS + EXTRA_IDS
    ]
    not_json, server_errors = [], []
    for method, url in [*hostile, *HOSTILE_PARAMS]:
        response = app.client.request(method, url, timeout=10)
        if not is_json(response):
            not_json.append((method, url, response.status_code, response.text[:80]))
        if response.status_code >= 500:
            server_errors.append((method, url, response.status_code))
    created = sorted(
        str(p.relative_to(files.root))
        for p in files_under(files.root) - before
        if not p.name.startswith(("dxg.db", "app-"))
    )

    json_post = {"Content-Type": "application/json"}
    attempts = {
        "Origin evil, load": ("load", {"Origin": "http://evil.example", **json_post}),
        "Origin evil, unload": ("unload", {"Origin": "http://evil.example", **json_post}),
        "Origin null": ("load", {"Origin": "null", **json_post}),
        "Origin other port": ("load", {"Origin": "http://127.0.0.1:1", **json_post}),
        "Origin look-alike": ("load", {"Origin": f"{own}.evil.example", **json_post}),
        "Origin https own host": ("load", {"Origin": f"https://127.0.0.1:{files.port}", **json_post}),
        "form, text/plain": ("load", {"Content-Type": "text/plain"}),
        "form, urlencoded": ("load", {"Content-Type": "application/x-www-form-urlencoded"}),
        "form, multipart": ("load", {"Content-Type": "multipart/form-data; boundary=x"}),
        "Host evil (rebinding)": ("load", {"Host": "evil.example"}),
        "Host evil:port (rebinding)": ("load", {"Host": f"evil.example:{files.port}"}),
        "Referer-only evil": ("load", {"Referer": "http://evil.example/", "Content-Type": "text/plain"}),
    }
    accepted = []
    for name, (command, headers) in attempts.items():
        response = app.client.post(
            f"/api/models/sim-h/{command}", headers=headers, content=b"a=b", timeout=10
        )
        if response.status_code < 400:
            accepted.append((name, response.status_code))
    rebound_read = app.client.get("/api/models", headers={"Host": "evil.example"}, timeout=10).status_code
    recorded = [e.type for e in files.events("sim-h")]
    # The app's own origin with JSON still works, so the refusals above are not a blanket no.
    own_answer = app.client.post(
        "/api/models/sim-h/unload", headers={"Origin": own, **json_post}, content=b"{}"
    ).status_code

    record(
        "hostile ids and parameters",
        "all JSON, nothing created" if not not_json and not created else "leaks",
        {
            "requests": len(hostile) + len(HOSTILE_PARAMS),
            "non_json": len(not_json),
            "server_errors": len(server_errors),
            "files_created": len(created),
        },
    )
    record(
        "cross-origin / rebinding requests",
        "all refused" if not accepted else "accepted some",
        {
            "attempts": len(attempts),
            "accepted": len(accepted),
            "events_recorded": len(recorded),
            "rebound_read": rebound_read,
            "own_origin": own_answer,
        },
    )
    assert app.signal(signal.SIGTERM, SHUTDOWN_BUDGET_S) in CLEAN_EXIT
    assert not_json == []
    assert server_errors == []
    assert created == []
    assert accepted == []
    assert recorded == []
    assert rebound_read == 421
    assert own_answer == 202


def test_an_unwritable_store_answers_503_and_recovers(tmp_path: Path, record: Record) -> None:
    catalog = write_catalog(tmp_path / "models.yaml", sim_process("sim-w", free_port()))
    settings = api_settings(tmp_path, catalog)
    with serve(settings) as client:
        assert client.post("/api/models/sim-w/load?wait=true&timeout_s=30").status_code == 200
        (server,) = instance_processes(settings.instance, "sim-w")
        pid = server.pid
        with refusing_writes(service_access.get_service().store.engine):
            load = client.post("/api/models/sim-w/load").status_code
            unload = client.post("/api/models/sim-w/unload").status_code
            health = client.get("/api/health").status_code
            os.kill(pid, signal.SIGKILL)  # a crash during the outage: it can't be recorded
            wait_until(lambda: not pid_alive(pid), 10, what="the server to die")
            during = wait_until(
                lambda: (s := client.get("/api/models/sim-w").json())["status"] != "Loaded & Ready" and s,
                10,
                what="the model to stop reading as ready",
            )
        wait_until(lambda: client.get("/api/health").status_code == 200, 10, what="health back to 200")
        after = client.post("/api/models/sim-w/unload?wait=true&timeout_s=30").status_code
        types = [e["type"] for e in client.get("/api/events?model=sim-w&limit=100").json()["events"]]
    figure = {
        "load_already_wanted": load,
        "unload": unload,
        "health": health,
        "status_during": during["status"][:40],
        "unload_after": after,
        "crash_recorded_after": "Crashed" in types,
    }
    record("unwritable store", "503 then recovered", figure)
    assert load in (202, 503)  # already wanted: nothing to write, so it may be accepted
    assert (unload, health) == (503, 503)
    assert during["loaded"] is False
    assert after == 200
    assert figure["crash_recorded_after"], types


def canary_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> dict[str, Any]:
    """A server handed the canary (a pass-through NGC_API_KEY) prints it and dies before ready;
    then every answer, the store's bytes, the server's log file and the app's log are searched."""
    monkeypatch.setenv("NGC_API_KEY", CANARY)
    leaky = leaking_process("leaky", tmp_path, {"NGC_API_KEY": None})
    catalog = write_catalog(tmp_path / "models.yaml", leaky)
    with caplog.at_level(logging.DEBUG), serve(api_settings(tmp_path, catalog)) as client:
        answers = [client.post("/api/models/leaky/load?wait=true&timeout_s=30")]
        answers += [
            client.get(url, headers=headers)
            for url in (
                "/api/models/leaky/logs?tail=50",
                "/api/models/leaky",
                "/api/models",
                "/api/events?model=leaky&limit=100",
                "/api/events?limit=100",
                "/api/health",
            )
            for headers in ({}, {"Accept": "text/plain"})
        ]
    assert answers[0].status_code == 409, answers[0].text  # it died before it was ready
    assert "using key ***" in answers[1].text, answers[1].text  # the lines are served, masked
    logs = [p for p in (tmp_path / "logs").rglob("*") if p.is_file()]
    return {
        "answers": sum(r.text.count(CANARY) for r in answers),
        "store": sum(p.read_bytes().count(CANARY.encode()) for p in tmp_path.glob("dxg.db*")),
        "app_log": caplog.text.count(CANARY),
        "server_log_file": sum(p.read_bytes().count(CANARY.encode()) for p in logs),
    }


def test_a_printed_secret_reaches_no_answer_no_store_and_no_log_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, record: Record
) -> None:
    places = canary_run(tmp_path, monkeypatch, caplog)
    total = sum(places.values())
    record("secret canary", "masked everywhere" if total == 0 else "leaked", {**places, "total": total})
    assert total == 0, places
