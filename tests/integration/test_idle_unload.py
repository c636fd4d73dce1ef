"""Idle unload against the app's lifespan and real simulator processes: a model nothing uses is
unloaded after its idle_ttl_s (UnloadRequested, reason idle), never while a /v1 stream or a
benchmark run uses it, and a model without one stays."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.app_harness import api_settings, serve
from tests.catalogs import sim_process, write_catalog
from tests.integration.test_benchmark_api import LONG, finished, start
from tests.support import free_port, wait_until

pytestmark = pytest.mark.timeout(120)

TTL_S = 1.0
HELLO = [{"role": "user", "content": "hello"}]
SLOW_TOKENS = 30  # at 10 tokens/s: a 3 s stream, three times the idle time


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    catalog = write_catalog(
        tmp_path / "models.yaml",
        {**sim_process("idle-a", free_port(), "--tokens-per-s", "10"), "idle_ttl_s": TTL_S},
        sim_process("keep-b", free_port()),
    )
    with serve(api_settings(tmp_path, catalog)) as client:
        yield client


def idle_unloads(client: TestClient, model_id: str) -> list[dict[str, Any]]:
    events = client.get("/api/events", params={"model": model_id}).json()["events"]
    return [e for e in events if e["type"] == "UnloadRequested" and e["payload"]["reason"] == "idle"]


def stopped(client: TestClient, model_id: str) -> bool:
    return bool(client.get(f"/api/models/{model_id}").json()["phase"] == "stopped")


def test_a_model_nothing_uses_is_unloaded_after_its_idle_time_and_one_without_stays(
    client: TestClient,
) -> None:
    for model_id in ("keep-b", "idle-a"):  # idle-a last: its idle time counts from its answer
        body = {"model": model_id, "messages": HELLO, "max_tokens": 1}
        assert client.post("/v1/chat/completions", json=body).status_code == 200
    answered = time.time()
    wait_until(lambda: idle_unloads(client, "idle-a"), 10, what="the idle unload")
    wait_until(lambda: stopped(client, "idle-a"), 10, what="idle-a to stop")
    (unload,) = idle_unloads(client, "idle-a")
    assert unload["ts"] >= answered + TTL_S - 0.05  # idle from the end of its last use
    assert client.get("/api/models/keep-b").json()["phase"] == "ready"
    assert idle_unloads(client, "keep-b") == []
    # What the dialog says ("unloads after 1 s idle") comes from the status.
    assert client.get("/api/models/idle-a").json()["idle_unload_s"] == TTL_S
    assert client.get("/api/models/keep-b").json()["idle_unload_s"] is None


def test_an_open_stream_keeps_the_model_loaded(client: TestClient) -> None:
    client.post("/api/models/idle-a/load", params={"wait": "true", "timeout_s": "30"})
    ended: list[float] = []

    def stream() -> None:
        body = {"model": "idle-a", "messages": HELLO, "max_tokens": SLOW_TOKENS, "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=body) as answer:
            assert answer.status_code == 200
            assert b"[DONE]" in b"".join(answer.iter_bytes())
        ended.append(time.time())

    streaming = threading.Thread(target=stream)
    streaming.start()
    streaming.join(timeout=30)
    assert ended, "the stream did not end"
    wait_until(lambda: idle_unloads(client, "idle-a"), 10, what="the idle unload after the stream")
    (unload,) = idle_unloads(client, "idle-a")
    assert unload["ts"] >= ended[0] + TTL_S - 0.05  # not during the 3 s stream


def test_a_benchmark_run_keeps_the_model_loaded(client: TestClient) -> None:
    client.post("/api/models/idle-a/load", params={"wait": "true", "timeout_s": "30"})
    (run,) = start(client, {**LONG, "output_tokens": {"mean": 4}}, "idle-a")

    def measured_for() -> float:
        progress = client.get(f"/api/benchmarks/{run['run_id']}").json()["progress"]
        return max((level["elapsed_s"] for level in progress), default=0.0)

    # Three idle times into the run (by the run's own clock), the model is still there.
    wait_until(lambda: measured_for() >= 3 * TTL_S, 30, what="three idle times of measuring")
    assert idle_unloads(client, "idle-a") == []
    assert client.get("/api/models/idle-a").json()["phase"] == "ready"
    assert client.post(f"/api/benchmarks/{run['run_id']}/cancel").status_code == 202
    assert finished(client, run["run_id"])["status"] == "partial"
    wait_until(lambda: idle_unloads(client, "idle-a"), 10, what="the idle unload after the run")
