"""/api/benchmarks against the app's lifespan and real simulator processes: every route and error,
two runs on one model queue, a cancel, and an app exit during a run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import cli
from tests.app_harness import api_settings, serve
from tests.catalogs import sim_process, write_catalog
from tests.support import free_port, wait_until

pytestmark = pytest.mark.timeout(120)

TINY = {"kind": "sweep", "concurrency": [1, 2], "requests_per_level": 6, "warmup_requests": 1,
        "input_tokens": {"mean": 16}, "output_tokens": {"mean": 8}}  # fmt: skip
# Long enough to be surely running when the test acts on it.
LONG = {**TINY, "concurrency": [2], "requests_per_level": 2000, "output_tokens": {"mean": 64}}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    catalog = write_catalog(
        tmp_path / "models.yaml",
        sim_process("bench-a", free_port(), "--tokens-per-s", "400"),
        sim_process("bench-b", free_port(), "--tokens-per-s", "400"),
    )
    with serve(api_settings(tmp_path, catalog)) as client:
        yield client


def load(client: TestClient, *models: str) -> None:
    for model_id in models:
        answer = client.post(f"/api/models/{model_id}/load", params={"wait": "true", "timeout_s": "30"})
        assert answer.status_code == 200, answer.text


def start(client: TestClient, workload: dict[str, Any], *models: str, **params: str) -> list[dict[str, Any]]:
    answer = client.post(
        "/api/benchmarks", json={"models": list(models), "workload": workload}, params=params
    )
    assert answer.status_code == 202, answer.text
    return list(answer.json()["runs"])


def finished(client: TestClient, run_id: str, timeout_s: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = client.get(f"/api/benchmarks/{run_id}").json()
        return body if body["state"] == "done" else None

    return wait_until(done, timeout_s, what=f"benchmark {run_id} to finish")


def test_a_run_is_started_watched_stored_and_exported(client: TestClient) -> None:
    load(client, "bench-a")
    (run,) = start(client, TINY, "bench-a")
    assert run["state"] in ("queued", "running")
    assert run["model_id"] == "bench-a"
    done = finished(client, run["run_id"])
    assert done["status"] in ("complete", "invalid"), done
    assert [level["completed"] for level in done["results"]["levels"]] == [6, 6]
    listed = client.get("/api/benchmarks", params={"model": "bench-a"}).json()
    assert run["run_id"] in [r["run_id"] for r in listed["runs"]]
    as_json = client.get(f"/api/benchmarks/{run['run_id']}/export", params={"format": "json"})
    assert as_json.status_code == 200
    assert len([r for r in as_json.json()["requests"] if not r["warmup"]]) == 12
    as_csv = client.get(f"/api/benchmarks/{run['run_id']}/export", params={"format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert len(as_csv.text.strip().splitlines()) == 1 + len(as_json.json()["requests"])
    events = client.get("/api/events", params={"model": "bench-a"}).json()["events"]
    assert {"BenchmarkStarted", "BenchmarkFinished"} <= {e["type"] for e in events}


def test_two_runs_on_one_model_queue_and_other_models_run_beside(client: TestClient) -> None:
    load(client, "bench-a", "bench-b")
    first, beside = start(client, LONG, "bench-a", "bench-b")
    (second,) = start(client, TINY, "bench-a")
    wait_until(lambda: client.get(f"/api/benchmarks/{beside['run_id']}").json()["state"] == "running", 20,
               what="bench-b running beside bench-a")  # fmt: skip
    queued = client.get(f"/api/benchmarks/{second['run_id']}").json()
    assert queued["state"] == "queued"
    assert queued["queue_position"] == 1
    for run in (first, beside):
        assert client.post(f"/api/benchmarks/{run['run_id']}/cancel").status_code == 202
    for run in (first, beside):
        assert finished(client, run["run_id"])["status"] == "partial"
    assert finished(client, second["run_id"])["status"] in ("complete", "invalid")


def test_a_cancelled_run_is_kept_as_partial_and_cannot_be_cancelled_twice(client: TestClient) -> None:
    load(client, "bench-a")
    (run,) = start(client, LONG, "bench-a")
    run_id = run["run_id"]
    wait_until(lambda: client.get(f"/api/benchmarks/{run_id}").json().get("progress"), 20, what="progress")
    assert client.post(f"/api/benchmarks/{run_id}/cancel").status_code == 202
    done = finished(client, run_id)
    assert (done["status"], done["error"]) == ("partial", "cancelled")
    again = client.post(f"/api/benchmarks/{run_id}/cancel")
    assert (again.status_code, again.json()["error"]) == (409, "finished")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"models": ["bench-a"], "workload": {"kind": "sweep"}}, "workload"),
        ({"models": ["bench-a"], "workload": {**TINY, "concurrency": [0]}}, "workload.concurrency.0"),
        ({"models": ["bench-a"], "workload": {**TINY, "kind": "depth", "runs": 0}}, "workload"),
        ({"models": [], "workload": TINY}, "models"),
        ({"models": ["../etc"], "workload": TINY}, "models"),
        ({"models": ["bench-a"], "preset": "huge"}, "preset"),
    ],
)
def test_a_bad_request_gets_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    load(client, "bench-a")
    answer = client.post("/api/benchmarks", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_request"
    assert answer.json().get("field", "").startswith(field), answer.json()


def test_refusals_and_unknowns(client: TestClient) -> None:
    not_loaded = client.post("/api/benchmarks", json={"models": ["bench-a"], "preset": "quick"})
    assert (not_loaded.status_code, not_loaded.json()["error"]) == (409, "not_loaded")
    unknown = client.post("/api/benchmarks", json={"models": ["nope"], "preset": "quick"})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_model")
    assert client.get("/api/benchmarks/0123456789ab").status_code == 404
    assert client.get("/api/benchmarks/not-an-id").json()["error"] == "unknown_run"
    assert client.post("/api/benchmarks/0123456789ab/cancel").status_code == 404
    assert client.get("/api/benchmarks/0123456789ab/export").status_code == 404
    assert client.get("/api/benchmarks", params={"status": "odd"}).status_code == 422
    assert client.post("/api/benchmarks", content=b"{not json").status_code == 422


def test_load_true_loads_the_model_and_then_runs(client: TestClient) -> None:
    (run,) = start(client, TINY, "bench-b", load="true")
    done = finished(client, run["run_id"])
    assert done["status"] in ("complete", "invalid"), done
    assert client.get("/api/models/bench-b").json()["loaded"] is True


def test_app_exit_during_a_run_saves_it_as_partial(tmp_path: Path) -> None:
    catalog = write_catalog(
        tmp_path / "models.yaml", sim_process("bench-a", free_port(), "--tokens-per-s", "400")
    )
    settings = api_settings(tmp_path, catalog)
    with serve(settings) as client:
        load(client, "bench-a")
        (run,) = start(client, LONG, "bench-a")
        run_id = run["run_id"]
        wait_until(
            lambda: client.get(f"/api/benchmarks/{run_id}").json().get("progress"), 20, what="progress"
        )
    # The lifespan has ended: the run was cancelled and saved before the servers were stopped.
    with serve(settings) as client:
        stored = client.get(f"/api/benchmarks/{run_id}").json()
        assert (stored["state"], stored["status"]) == ("done", "partial"), stored
        events = [e["type"] for e in client.get("/api/events", params={"model": "bench-a"}).json()["events"]]
        # Newest first: the run ended before the app's shutdown stopped the server.
        assert events.index("BenchmarkFinished") > events.index("Stopped")


def test_the_cli_wraps_the_routes(
    client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(client, "bench-a")
    workload = tmp_path / "workload.json"
    workload.write_text(json.dumps(TINY), encoding="utf-8")
    assert cli.main(["bench", "start", "bench-a", "--workload", str(workload)], client=client) == 0
    run_id = capsys.readouterr().out.split()[0]
    finished(client, run_id)
    assert cli.main(["bench", "list", "--model", "bench-a"], client=client) == 0
    assert run_id in capsys.readouterr().out
    assert cli.main(["bench", "export", run_id, "--format", "csv"], client=client) == 0
    assert capsys.readouterr().out.startswith("ordinal,level,seq")
    assert cli.main(["bench", "cancel", run_id], client=client) == 1  # finished: refused, with why
    assert "finished" in capsys.readouterr().err
