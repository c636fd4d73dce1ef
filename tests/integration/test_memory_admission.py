"""Admission by memory against the app's lifespan and real simulator processes, with a set budget:
a refusal in the 409's words, LRU eviction that starts the newcomer only once the evicted server
has stopped, a busy model never evicted, and two concurrent loads that each fit alone but not
together: exactly one is admitted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.app_harness import api_settings, serve
from tests.catalogs import sim_process, write_catalog
from tests.support import free_port, wait_until

pytestmark = pytest.mark.timeout(120)

BUDGET_GB = 10.0
HELLO = [{"role": "user", "content": "hello"}]


def sized(model_id: str, gb: float, *sim_args: str, **fields: Any) -> dict[str, Any]:
    return {**sim_process(model_id, free_port(), *sim_args), "memory_gb": gb, **fields}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    catalog = write_catalog(
        tmp_path / "models.yaml",
        sized("mem-a", 6),
        sized("mem-b", 6, "--tokens-per-s", "10"),
        sized("mem-swap", 6, swap=True),
        sized("mem-c", 3),
    )
    with serve(api_settings(tmp_path, catalog, memory_budget_gb=BUDGET_GB)) as client:
        yield client


def load(client: TestClient, model_id: str, **params: str) -> Any:
    return client.post(f"/api/models/{model_id}/load", params={"wait": "true", "timeout_s": "30", **params})


def events(client: TestClient, model_id: str) -> list[dict[str, Any]]:
    return list(reversed(client.get("/api/events", params={"model": model_id}).json()["events"]))


def test_a_load_that_does_not_fit_is_refused_with_what_to_unload(client: TestClient) -> None:
    assert load(client, "mem-a").status_code == 200
    assert load(client, "mem-c").status_code == 200  # 6 + 3 of 10
    refused = load(client, "mem-b")
    assert refused.status_code == 409
    body = refused.json()
    assert body["error"] == "not_enough_memory"
    assert body["detail"].startswith(
        "mem-b needs 6 GB; 1 GB free (budget 10 GB, DXG_MEMORY_BUDGET_GB); unload mem-a (6 GB, idle "
    )
    assert "or mem-c (3 GB, idle " in body["detail"]
    assert [e["type"] for e in events(client, "mem-b")] == []  # nothing recorded for a refusal
    metrics = client.get("/metrics").text
    assert 'dxg_memory_budget_gb{source="budget 10 GB, DXG_MEMORY_BUDGET_GB"} 10.0' in metrics
    assert "dxg_memory_free_gb 1.0" in metrics
    assert 'dxg_memory_held_gb{model="mem-a"} 6.0' in metrics
    # The gateway refuses the same way, in OpenAI's shape.
    answer = client.post("/v1/chat/completions", json={"model": "mem-b", "messages": HELLO})
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "not_enough_memory"


def test_evict_lru_unloads_the_idle_model_first_and_starts_once_it_stopped(client: TestClient) -> None:
    assert load(client, "mem-a").status_code == 200
    assert load(client, "mem-b", evict="lru").status_code == 200
    a_events, b_events = events(client, "mem-a"), events(client, "mem-b")
    unload = next(e for e in a_events if e["type"] == "UnloadRequested")
    assert unload["payload"]["reason"] == "evicted"
    stopped = next(e for e in a_events if e["type"] == "Stopped")
    started = next(e for e in b_events if e["type"] == "StartIssued")
    assert started["ts"] >= stopped["ts"]  # the newcomer waited for the memory to be freed
    assert client.get("/api/models/mem-a").json()["phase"] == "stopped"


def test_a_swap_model_makes_room_by_itself_but_never_by_evicting_a_busy_one(client: TestClient) -> None:
    assert load(client, "mem-b").status_code == 200
    done = threading.Event()

    def long_stream() -> None:  # 30 tokens at 10/s: mem-b is busy for 3 s
        body = {"model": "mem-b", "messages": HELLO, "max_tokens": 30, "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=body) as answer:
            answer.read()
        done.set()

    streaming = threading.Thread(target=long_stream)
    streaming.start()
    try:
        in_flight = 'dxg_gateway_in_flight{model="mem-b"} 1.0'
        wait_until(
            lambda: in_flight in client.get("/metrics").text, 10, what="mem-b's stream to be under way"
        )
        refused = load(client, "mem-swap")
        assert refused.status_code == 409, refused.text
        assert "mem-b (6 GB, in use)" in refused.json()["detail"]
    finally:
        streaming.join(timeout=30)
    assert done.is_set()
    assert load(client, "mem-swap").status_code == 200  # now idle: evicted by swap
    unload = next(e for e in events(client, "mem-b") if e["type"] == "UnloadRequested")
    assert unload["payload"]["reason"] == "evicted"


def test_two_loads_that_each_fit_alone_but_not_together_admit_exactly_one(client: TestClient) -> None:
    codes: dict[str, int] = {}
    barrier = threading.Barrier(2)

    def ask(model_id: str) -> None:
        barrier.wait()
        codes[model_id] = client.post(f"/api/models/{model_id}/load").status_code

    threads = [threading.Thread(target=ask, args=(m,)) for m in ("mem-a", "mem-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(codes.values()) == [202, 409], codes
