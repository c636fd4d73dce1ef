"""/v1 on the real app process (``streamlit run app.py``) in front of real simulator processes:
chunk timing survives the hop, 100 concurrent requests for a cold model start one server, a
client that leaves while its model loads leaves the load going, and a streaming request from
the real ``openai`` client."""

from __future__ import annotations

import asyncio
import itertools
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import openai
import pytest

from tests.catalogs import sim_process
from tests.e2e.app_process import AppFiles, RunningApp, app_files, start_app
from tests.support import free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TOKENS_PER_S: Final = 50  # a 20 ms gap between tokens: what the hop must not blur
ITL_MS: Final = 1000 / TOKENS_PER_S
TOKENS: Final = 60
COLD_REQUESTS: Final = 100
HELLO: Final = [{"role": "user", "content": "hello"}]


@pytest.fixture
def files(tmp_path: Path) -> Iterator[AppFiles]:
    with app_files(
        tmp_path,
        sim_process("gw-paced", free_port(), "--tokens-per-s", str(TOKENS_PER_S)),
        sim_process("gw-cold", free_port(), startup_s=1.0),
        sim_process("gw-slow", free_port(), startup_s=4.0),
    ) as files:
        yield files


@pytest.fixture
def app(files: AppFiles) -> Iterator[RunningApp]:
    running = start_app(files)
    try:
        yield running
    finally:
        running.unload_all()
        running.signal(signal.SIGTERM, 30)


def _events(files: AppFiles, model_id: str, kind: str) -> int:
    return sum(1 for e in files.events(model_id) if e.type == kind)


def _content_arrivals(url: str, model: str) -> tuple[list[float], int]:
    """Arrival times (ms) of the content-carrying SSE events, and how many reads held two or more."""
    body = {"model": model, "messages": HELLO, "max_tokens": TOKENS, "stream": True}
    arrivals: list[float] = []
    coalesced = 0
    with httpx.Client(timeout=30) as client, client.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            at = time.perf_counter() * 1000
            tokens = chunk.count(b'"content":"')
            coalesced += tokens > 1
            arrivals.extend([at] * tokens)
    return arrivals, coalesced


def test_chunk_timing_survives_the_gateway(app: RunningApp, files: AppFiles) -> None:
    status = app.load("gw-paced")
    direct, direct_coalesced = _content_arrivals(f"{status['url']}/v1/chat/completions", "gw-paced")
    through, coalesced = _content_arrivals(f"{app.base_url}/v1/chat/completions", "gw-paced")
    assert len(through) == len(direct) >= TOKENS - 1
    assert (coalesced, direct_coalesced) == (0, 0)
    gaps = [b - a for a, b in itertools.pairwise(through[1:])]  # past the first token
    direct_gaps = [b - a for a, b in itertools.pairwise(direct[1:])]
    assert abs(statistics.median(gaps) - ITL_MS) <= 2.0, gaps
    assert abs(statistics.median(gaps) - statistics.median(direct_gaps)) <= 2.0


def test_100_concurrent_requests_for_a_cold_model_start_one_server(app: RunningApp, files: AppFiles) -> None:
    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=app.base_url, timeout=60, limits=httpx.Limits()) as client:
            body = {"model": "gw-cold", "messages": HELLO, "max_tokens": 2}
            answers = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=body) for _ in range(COLD_REQUESTS))
            )
        return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [200] * COLD_REQUESTS
    assert _events(files, "gw-cold", "LoadRequested") == 1
    assert _events(files, "gw-cold", "StartIssued") == 1
    assert len(files.server_processes()) == 1


def test_a_client_that_leaves_while_its_model_loads_leaves_the_load_going(
    app: RunningApp, files: AppFiles
) -> None:
    body = {"model": "gw-slow", "messages": HELLO, "max_tokens": 2}
    with pytest.raises(httpx.ReadTimeout):  # it gives up long before the 4 s start ends
        httpx.post(f"{app.base_url}/v1/chat/completions", json=body, timeout=0.5)
    wait_until(
        lambda: "a client left while gw-slow was loading" in app.output(), 10, what="the gateway to notice"
    )
    wait_until(lambda: app.model("gw-slow")["phase"] == "ready", 30, what="gw-slow to finish loading")
    assert _events(files, "gw-slow", "LoadRequested") == 1
    # The next request finds it warm.
    answer = httpx.post(f"{app.base_url}/v1/chat/completions", json=body, timeout=10)
    assert answer.status_code == 200


def test_the_openai_client_streams_through_the_app(app: RunningApp) -> None:
    client = openai.OpenAI(base_url=f"{app.base_url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="gw-paced",
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=10,
        stream=True,
    )
    pieces: list[Any] = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) == 10
    plain = client.chat.completions.create(model="gw-paced", messages=HELLO, max_tokens=5)  # type: ignore[arg-type]
    assert plain.usage is not None
    assert plain.usage.completion_tokens == 5


def test_with_cancel_abandoned_loads_the_last_waiter_leaving_unloads_the_model(files: AppFiles) -> None:
    running = start_app(files, DXG_GATEWAY_CANCEL_ABANDONED_LOADS="true")
    try:
        body = {"model": "gw-slow", "messages": HELLO, "max_tokens": 2}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{running.base_url}/v1/chat/completions", json=body, timeout=0.5)
        wait_until(lambda: running.model("gw-slow")["phase"] == "stopped", 30, what="gw-slow to be unloaded")
        unloads = [e for e in files.events("gw-slow") if e.type == "UnloadRequested"]
        assert [(e.actor, e.event.payload()["reason"]) for e in unloads] == [("gateway", "abandoned")]
    finally:
        running.signal(signal.SIGTERM, 30)
