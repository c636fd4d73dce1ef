"""The simulator as a real process: readiness, token timing, usage, faults, signals, concurrency.

Every test runs ``python -m simulator`` as a child process and talks to it over
HTTP with the project's own inference client. Moments are compared with the
simulator's own ``SIM_EVENT`` log lines (its ground truth), never with sleeps.
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from inference import (
    ChatRequest,
    ChatResult,
    ChatStream,
    ModelNotReady,
    ServerError,
    StreamInterrupted,
    achat,
    chat,
)
from simulator.process import SimulatorProcess
from simulator.tokens import expected_text
from tests.support import free_port, wait_until

ENGINES = ("nim", "llamacpp", "vllm")
MODEL = "sim-test"
TTFT_MS = 30.0
RATE = 50.0
DEFAULT_TOKENS = 7
LLAMA_LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
PROMPT = [{"role": "user", "content": "three word prompt"}]

READINESS_TOLERANCE_S = 0.050
P50_TOLERANCE_MS = 2.0


@contextmanager
def simulator(engine: str, *args: str) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(engine, MODEL, free_port(), args) as sim:
        yield sim


def request(sim: SimulatorProcess, max_tokens: int | None, include_usage: bool = True) -> ChatRequest:
    return ChatRequest(sim.base_url, MODEL, PROMPT, max_tokens=max_tokens, include_usage=include_usage)


def p50_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000.0


@pytest.fixture(scope="module", params=ENGINES)
def served(request: pytest.FixtureRequest) -> Iterator[SimulatorProcess]:
    """One ready simulator per engine, shared by the tests that only chat with it."""
    args = ("--ttft-ms", f"{TTFT_MS:g}", "--tokens-per-s", f"{RATE:g}")
    with simulator(request.param, *args, "--max-tokens-default", str(DEFAULT_TOKENS)) as sim:
        sim.wait_event("ready")
        yield sim


# --- readiness ---------------------------------------------------------------------------------


def observe(client: httpx.Client, engine: str, base: str) -> str:
    """What the engine's own readiness signal says right now: "ready" or why not."""
    try:
        if engine == "nim":
            r = client.get(f"{base}/v1/health/ready")
            return "ready" if r.status_code == 200 else str(r.status_code)
        if engine == "llamacpp":
            r = client.get(f"{base}/health")
            assert r.json() == ({"status": "ok"} if r.status_code == 200 else LLAMA_LOADING)
            return "ready" if r.status_code == 200 else str(r.status_code)
        r = client.get(f"{base}/v1/models")  # vLLM: ready means the model is listed
        return "ready" if MODEL in [m["id"] for m in r.json()["data"]] else "empty"
    except httpx.ConnectError:
        return "refused"


# While loading: NIM and llama.cpp answer 503; vLLM refuses connections like real vLLM.
LOADING_ANSWER = {"nim": "503", "llamacpp": "503", "vllm": "refused"}


@pytest.mark.parametrize("engine", ENGINES)
def test_readiness_flips_at_startup_s(engine: str) -> None:
    startup_s = 1.5
    with simulator(engine, "--startup-s", f"{startup_s}") as sim, httpx.Client(timeout=2.0) as client:
        start = sim.wait_event("start")
        polls: list[tuple[float, float, str]] = []  # (before, after, state) in epoch seconds

        def poll() -> bool:
            before = time.time()
            state = observe(client, engine, sim.base_url)
            polls.append((before, time.time(), state))
            return state == "ready"

        wait_until(poll, timeout_s=startup_s + 10, interval_s=0.002, what=f"{engine} ready")
        expected = start.t + startup_s
        loading = [p for p in polls if p[2] != "ready"]
        assert loading, "never saw the loading phase"
        assert LOADING_ANSWER[engine] in {p[2] for p in loading}, polls[:5]
        assert {p[2] for p in loading} <= {"refused", LOADING_ANSWER[engine]}

        # Not ready early: the first "ready" answer was asked for no sooner than the moment
        # (minus tolerance). A stalled poll can only make this later, never earlier.
        first_ready_before, first_ready_after = polls[-1][:2]
        assert first_ready_before >= expected - READINESS_TOLERANCE_S
        # Ready on time: that answer had arrived within the tolerance after the moment.
        assert first_ready_after <= expected + READINESS_TOLERANCE_S
        # The logged ready moment (what the benchmark compares with) is consistent with
        # what a client saw: after the last "loading" request, before the first "ready" answer.
        logged = sim.wait_event("ready").t
        assert loading[-1][0] <= logged <= first_ready_after
        assert logged == pytest.approx(expected, abs=READINESS_TOLERANCE_S)


def test_vllm_can_answer_while_loading() -> None:
    with simulator("vllm", "--startup-s", "1.5", "--serve-while-loading") as sim:
        sim.wait_event("listening")
        with httpx.Client(timeout=2.0) as client:
            assert client.get(f"{sim.base_url}/health").status_code == 200
            assert client.get(f"{sim.base_url}/v1/models").json() == {"object": "list", "data": []}
            with pytest.raises(ModelNotReady):
                chat(request(sim, 3), client)
            assert sim.event("ready") is None  # all of the above happened while loading
            wait_until(lambda: observe(client, "vllm", sim.base_url) == "ready", 10, what="model listed")


@pytest.mark.parametrize("engine", ["nim", "llamacpp"])
def test_chat_before_ready_is_503(engine: str) -> None:
    with simulator(engine, "--startup-s", "30") as sim:
        sim.wait_event("listening")
        with pytest.raises(ModelNotReady) as info:
            chat(request(sim, 3))
        assert info.value.status == 503
        assert "not ready" in str(info.value)
        if engine == "llamacpp":
            assert info.value.detail == "Loading model"


# --- streaming: timing, content, usage ---------------------------------------------------------


def test_stream_timing_matches_configuration(served: SimulatorProcess) -> None:
    # Short replies give many TTFT samples cheaply; long ones give many gaps and show drift.
    lengths = [2] * 30 + [25] * 2
    with httpx.Client() as client:
        chat(request(served, 1), client)  # warm the keep-alive connection and code paths
        results = [chat(request(served, n), client) for n in lengths]

    ttft_errors = [r.ttft_s - TTFT_MS / 1000 for r in results if r.ttft_s is not None]
    gap_errors = [gap - 1 / RATE for r in results for gap in r.inter_token_s]
    # Each token against its absolute deadline (sent + ttft + i/rate): drift would show here.
    schedule_errors = [
        (t - r.sent_at) - (TTFT_MS / 1000 + i / RATE) for r in results for i, t in enumerate(r.token_times)
    ]
    assert len(ttft_errors) == len(lengths)
    assert min(ttft_errors) >= 0, "a token came before its time"
    server_late_ms = statistics.mean(r.sim["mean_late_ms"] for r in results if r.sim is not None)
    context = f"(the server itself was {server_late_ms:.2f} ms late on average)"
    assert abs(p50_ms(ttft_errors)) <= P50_TOLERANCE_MS, f"TTFT p50 error {context}"
    assert abs(p50_ms(gap_errors)) <= P50_TOLERANCE_MS, f"inter-token gap p50 error {context}"
    assert abs(p50_ms(schedule_errors)) <= P50_TOLERANCE_MS, f"token schedule p50 error {context}"
    for r in results:
        assert r.sim is not None
        assert (r.sim["ttft_ms"], r.sim["tokens_per_s"]) == (TTFT_MS, RATE)
    for r in results[-2:]:
        assert r.tokens_per_s == pytest.approx(RATE, rel=0.1)  # one late token skews a 0.5 s span


def test_stream_content_and_usage(served: SimulatorProcess) -> None:
    result = chat(request(served, 12))
    assert result.text == expected_text(12)
    assert len(result.token_times) == 12
    assert (result.output_tokens, result.tokens_from_usage) == (12, True)
    assert result.prompt_tokens == 3  # "three word prompt"
    assert result.finish_reason == "length"
    assert result.model == MODEL


def test_stream_without_usage_counts_chunks(served: SimulatorProcess) -> None:
    result = chat(request(served, 5, include_usage=False))
    assert (result.output_tokens, result.tokens_from_usage) == (5, False)
    assert result.text == expected_text(5)


def test_max_tokens_default_applies(served: SimulatorProcess) -> None:
    result = chat(request(served, None))
    assert result.output_tokens == DEFAULT_TOKENS
    assert result.text == expected_text(DEFAULT_TOKENS)


def test_first_frame_is_role_only(served: SimulatorProcess) -> None:
    engine = served.engine
    body = {**request(served, 2).body(), "stream_options": {"include_usage": True}}
    with (
        httpx.Client() as client,
        client.stream("POST", f"{served.base_url}/v1/chat/completions", json=body) as response,
    ):
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
    delta = json.loads(first.removeprefix("data: "))["choices"][0]["delta"]
    # llama-server really sends null here; vLLM-based servers send "".
    assert delta == {"role": "assistant", "content": None if engine == "llamacpp" else ""}


def test_sync_iterator_yields_text_pieces(served: SimulatorProcess) -> None:
    stream = ChatStream(request(served, 4))
    pieces = list(stream)
    assert pieces == ["Simulated", " tokens", " arrive", " on"]
    assert stream.result.text == "".join(pieces)


def test_non_streaming_chat(served: SimulatorProcess) -> None:
    body = {"model": MODEL, "messages": PROMPT, "max_tokens": 6}
    started = time.perf_counter()
    r = httpx.post(f"{served.base_url}/v1/chat/completions", json=body, timeout=10)
    elapsed = time.perf_counter() - started
    assert r.status_code == 200
    data = r.json()
    assert data["choices"][0]["message"] == {"role": "assistant", "content": expected_text(6)}
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    assert r.headers["x-sim-ttft-ms"] == f"{TTFT_MS:g}"
    assert r.headers["x-sim-tokens-per-s"] == f"{RATE:g}"
    # A whole reply arrives when its last token would have.
    assert elapsed >= TTFT_MS / 1000 + 5 / RATE


def test_bad_requests_are_rejected(served: SimulatorProcess) -> None:
    url = f"{served.base_url}/v1/chat/completions"
    assert httpx.post(url, json={"messages": PROMPT, "max_tokens": 0}).status_code == 400
    assert httpx.post(url, json={"messages": []}).status_code == 400
    assert httpx.post(url, content=b"{not json").status_code == 400


def test_unknown_model_name(served: SimulatorProcess) -> None:
    engine = served.engine
    other = ChatRequest(served.base_url, "no-such-model", PROMPT, max_tokens=2)
    if engine == "llamacpp":  # llama-server serves its one model whatever the request names
        assert chat(other).text == expected_text(2)
    else:
        with pytest.raises(ServerError) as info:
            chat(other)
        assert info.value.status == 404


# --- models, metrics, slots --------------------------------------------------------------------

METRIC_PREFIX = {"nim": "", "vllm": "vllm:", "llamacpp": "llamacpp:"}
GENERATED_METRIC = {"nim": "generation_tokens_total", "vllm": "generation_tokens_total"}


def generated_tokens(text: str, engine: str) -> int:
    name = METRIC_PREFIX[engine] + GENERATED_METRIC.get(engine, "tokens_predicted_total")
    line = next(line for line in text.splitlines() if line.startswith(name + "{"))
    return int(line.rsplit(" ", 1)[1])


def test_models_and_metrics(served: SimulatorProcess) -> None:
    engine = served.engine
    base = served.base_url
    models = httpx.get(f"{base}/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [MODEL]

    before = generated_tokens(httpx.get(f"{base}/metrics").text, engine)
    chat(request(served, 3))
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert generated_tokens(metrics.text, engine) == before + 3
    if engine == "nim":
        assert httpx.get(f"{base}/v1/metrics").text == httpx.get(f"{base}/metrics").text
        assert httpx.get(f"{base}/v1/health/live").status_code == 200
    if engine == "llamacpp":
        slots = httpx.get(f"{base}/slots").json()
        assert slots[0]["id"] == 0
        assert slots[0]["is_processing"] is False


# --- faults and signals ------------------------------------------------------------------------


def test_crash_after_s_cuts_the_stream_and_exits_1() -> None:
    crash_s = 1.5
    with simulator("nim", "--crash-after-s", f"{crash_s}", "--ttft-ms", "0", "--tokens-per-s", "20") as sim:
        start = sim.wait_event("start")
        sim.wait_event("ready")
        with pytest.raises(StreamInterrupted) as info:
            chat(request(sim, 1000))  # would take 50 s
        assert sim.wait(10) == 1
    crash = sim.wait_event("crash")
    assert crash.t == pytest.approx(start.t + crash_s, abs=READINESS_TOLERANCE_S)
    assert crash.fields["code"] == "1"
    assert "crashing as asked (--crash-after-s 1.5)" in sim.output
    partial = info.value.partial
    assert partial is not None
    assert 0 < len(partial.token_times) < 1000
    assert partial.text == expected_text(len(partial.token_times))


def test_crash_exit_code_is_configurable() -> None:
    with simulator("llamacpp", "--crash-after-s", "0.5", "--crash-exit-code", "137") as sim:
        assert sim.wait(10) == 137
    assert sim.wait_event("crash").fields["code"] == "137"


def test_fail_start_exits_3_before_listening() -> None:
    with simulator("vllm", "--fail-start") as sim:
        assert sim.wait(10) == 3
    assert "simulator: failing at start as asked (--fail-start)" in sim.output
    assert sim.event("fail_start") is not None
    assert sim.event("listening") is None


@pytest.mark.parametrize(
    "bad_args", [("--tokens-per-s", "0"), ("--serve-while-loading",), ("--crash-exit-code", "0")]
)
def test_bad_arguments_exit_2_with_a_reason(bad_args: tuple[str, ...]) -> None:
    with simulator("nim", *bad_args) as sim:
        assert sim.wait(10) == 2
    assert "error:" in sim.output


def test_busy_port_exits_4() -> None:
    with simulator("nim") as first:
        first.wait_event("listening")
        with SimulatorProcess("llamacpp", MODEL, first.port) as second:
            assert second.wait(10) == 4
        assert f"cannot bind 127.0.0.1:{first.port}" in second.output


def test_sigterm_stops_gracefully_after_open_streams_finish() -> None:
    with simulator("llamacpp", "--ttft-ms", "0", "--tokens-per-s", "20") as sim:
        sim.wait_event("ready")
        stream = ChatStream(request(sim, 10))
        for i, _ in enumerate(stream):
            if i == 0:
                sim.send_signal(signal.SIGTERM)
                sim.wait_event("stopping")
        assert stream.result.text == expected_text(10)  # the open stream was allowed to finish
        assert sim.wait(10) == 0
    assert sim.event("stopped") is not None


def test_ignore_sigterm_survives_until_sigkill() -> None:
    with simulator("nim", "--ignore-sigterm") as sim:
        sim.wait_event("ready")
        sim.send_signal(signal.SIGTERM)
        sim.wait_event("sigterm_ignored")
        assert sim.proc.poll() is None
        assert chat(request(sim, 2)).text == expected_text(2)  # still serving
        sim.send_signal(signal.SIGKILL)
        assert sim.wait(10) == -signal.SIGKILL
    assert sim.event("stopping") is None


# --- concurrency -------------------------------------------------------------------------------


def test_hundred_concurrent_streams_keep_their_schedule() -> None:
    streams, n, ttft_ms, rate = 100, 10, 100.0, 5.0
    # Open-loop arrivals, one stream every 10 ms: a load generator's schedule, not a wait.
    # Started all in one instant, the 100 token schedules would line up within a few ms and
    # the test would measure this client's burst handling instead of the simulator.
    spacing_s = 0.010

    async def run_all(base_url: str) -> list[ChatResult]:
        req = ChatRequest(base_url, MODEL, PROMPT, max_tokens=n)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(limits=limits) as client:

            async def one(k: int) -> ChatResult:
                await asyncio.sleep(k * spacing_s)
                return await achat(req, client)

            return await asyncio.gather(*(one(k) for k in range(streams)))

    with simulator("vllm", "--ttft-ms", f"{ttft_ms:g}", "--tokens-per-s", f"{rate:g}") as sim:
        sim.wait_event("ready")
        to_epoch = time.time() - time.perf_counter()  # our perf_counter -> the simulator's epoch
        results = asyncio.run(run_all(sim.base_url))

    assert len(results) == streams
    # Every stream was still open when the last one started: 100 really ran at once.
    assert max(r.sent_at for r in results) < min(r.token_times[-1] for r in results)
    for r in results:
        assert r.text == expected_text(n)
        assert (r.output_tokens, r.tokens_from_usage, len(r.token_times)) == (n, True, n)
        assert r.ttft_s is not None
        assert r.ttft_s >= ttft_ms / 1000
    # Each token against the schedule the server set when its request arrived.
    lateness = [
        t + to_epoch - (r.sim["first_token_due_t"] + i / rate)
        for r in results
        if r.sim is not None
        for i, t in enumerate(r.token_times)
    ]
    gaps = [gap - 1 / rate for r in results for gap in r.inter_token_s]
    assert len(lateness) == streams * n
    assert min(lateness) >= -0.0005, "a token came before its time"  # 0.5 ms: clock-mapping jitter
    # The server's own account of its lateness tells a slow server from a slow client.
    server_late_ms = statistics.mean(r.sim["mean_late_ms"] for r in results if r.sim is not None)
    context = f"(the server itself was {server_late_ms:.2f} ms late on average)"
    assert abs(p50_ms(lateness)) <= P50_TOLERANCE_MS, f"token lateness p50 {context}"
    assert abs(p50_ms(gaps)) <= P50_TOLERANCE_MS, f"inter-token gap p50 error {context}"
