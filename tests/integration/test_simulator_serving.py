"""The simulator's serving model over real HTTP: prefill, prefix cache, tokenizer, reasoning,
natural length, batch queueing and llama.cpp timings.

Each test runs ``python -m simulator`` as a child process (``tests.support.simulator``) and
reads its streams with plain httpx, stamping every SSE line as it arrives. The simulator's
``sim`` report is the ground truth; the client's stamps are checked against it with the same
kinds of bounds as ``test_simulator.py``: one-sided (a token is never early), or on the best of
several samples (load only ever delays).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from simulator.process import SimulatorProcess
from simulator.tokens import expected_reasoning, expected_text
from tests.support import simulator

ENGINES = ("nim", "llamacpp", "vllm")
MODEL = "sim-serving"
TTFT_MS = 20.0
RATE = 200.0
PREFILL_RATE = 4000.0
DEPTH_K = 1.0  # per 1k prompt tokens
REASONING = 3
NATURAL = 5
FEATURES = (
    *("--ttft-ms", f"{TTFT_MS:g}", "--tokens-per-s", f"{RATE:g}"),
    *("--prefill-tokens-per-s", f"{PREFILL_RATE:g}", "--decode-slowdown-per-1k", f"{DEPTH_K:g}"),
    *("--reasoning-tokens", str(REASONING), "--natural-length", str(NATURAL)),
)
REASONING_FIELD = {"nim": "reasoning_content", "llamacpp": "reasoning_content", "vllm": "reasoning"}
# Best-of-N bounds: on a quiet machine the simulator is within a millisecond or two; this
# leaves room for a loaded one and still fails a prefill or cache that is not applied.
BEST_OF_SLACK_S = 0.005


def prompt(tag: str, n_words: int) -> list[dict[str, str]]:
    """A user message of ``n_words`` distinct words; a new ``tag`` is a prompt the cache never saw."""
    return [{"role": "user", "content": " ".join(f"{tag}w{i}" for i in range(n_words))}]


@dataclass
class Streamed:
    """One streamed reply: each SSE payload with the ``perf_counter`` moment its line arrived."""

    sent_at: float
    frames: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def token_frames(self) -> list[tuple[float, dict[str, Any]]]:
        """(arrival, delta) of the frames that carry text on either channel."""
        found = []
        for t, payload in self.frames:
            for choice in payload.get("choices", []):
                delta = {k: v for k, v in choice["delta"].items() if k != "role" and v}
                if delta:
                    found.append((t, delta))
        return found

    @property
    def ttft_s(self) -> float:
        return self.token_frames()[0][0] - self.sent_at

    @property
    def last(self) -> dict[str, Any]:
        return self.frames[-1][1]

    @property
    def sim(self) -> dict[str, Any]:
        return self.last["sim"]

    @property
    def usage(self) -> dict[str, Any]:
        return next(p["usage"] for _, p in self.frames if p.get("usage"))

    @property
    def finish_reason(self) -> str:
        return next(c["finish_reason"] for _, p in self.frames for c in p["choices"] if c["finish_reason"])

    def text(self, key: str) -> str:
        return "".join(delta.get(key, "") for _, delta in self.token_frames())


def chat_body(messages: list[dict[str, str]]) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}


def _frame(line: str) -> dict[str, Any] | None:
    if not line.startswith("data: ") or line == "data: [DONE]":
        return None
    return json.loads(line.removeprefix("data: "))


def stream(client: httpx.Client, sim: SimulatorProcess, body: dict[str, Any]) -> Streamed:
    url = f"{sim.base_url}/v1/chat/completions"
    result = Streamed(sent_at=time.perf_counter())
    with client.stream("POST", url, json=body) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            at = time.perf_counter()
            if (payload := _frame(line)) is not None:
                result.frames.append((at, payload))
    return result


async def astream(
    client: httpx.AsyncClient,
    sim: SimulatorProcess,
    body: dict[str, Any],
    first_frame: asyncio.Event | None = None,
) -> Streamed:
    """``stream`` for asyncio; ``first_frame`` is set once the first frame is in."""
    url = f"{sim.base_url}/v1/chat/completions"
    result = Streamed(sent_at=time.perf_counter())
    async with client.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            at = time.perf_counter()
            if (payload := _frame(line)) is not None:
                result.frames.append((at, payload))
                if first_frame is not None:
                    first_frame.set()
    return result


def planned_ttft_s(sim: dict[str, Any]) -> float:
    return sim["first_token_due_t"] - sim["arrival_t"]


@pytest.fixture(scope="module", params=ENGINES)
def served(request: pytest.FixtureRequest) -> Iterator[SimulatorProcess]:
    """One ready simulator per engine with every serving-model knob turned on."""
    with simulator(request.param, MODEL, *FEATURES) as sim:
        sim.wait_event("ready")
        yield sim


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as c:
        yield c


# --- prefill and prefix cache ------------------------------------------------------------------


def test_prefill_time_and_prefix_cache_hits(served: SimulatorProcess, client: httpx.Client) -> None:
    engine, words, samples = served.engine, 408, 6  # 408 words: 25 whole blocks of 16 and 8 more
    cold_prefill_s, warm_prefill_s = words / PREFILL_RATE, (words - 400) / PREFILL_RATE
    stream(client, served, {**chat_body(prompt("warmup", 3)), "max_tokens": 1})  # keep-alive, code paths
    cold, warm = [], []
    for k in range(samples):
        messages = prompt(f"{engine}{k}", words)
        cold.append(stream(client, served, {**chat_body(messages), "max_tokens": 2}))
        warm.append(stream(client, served, {**chat_body(messages), "max_tokens": 2}))

    for reply, cached in [(r, 0) for r in cold] + [(r, 400) for r in warm]:
        sim = reply.sim
        assert (sim["prompt_tokens"], sim["cached_tokens"], sim["queued_ms"]) == (words, cached, 0.0)
        assert sim["prefill_ms"] == pytest.approx((words - cached) / PREFILL_RATE * 1000, abs=1e-6)
        assert planned_ttft_s(sim) == pytest.approx(
            TTFT_MS / 1000 + (words - cached) / PREFILL_RATE, abs=2e-6
        )
        usage = reply.usage
        assert usage["prompt_tokens"] == words
        if engine == "llamacpp":
            timings = reply.last["timings"]
            assert (timings["cache_n"], timings["prompt_n"]) == (cached, words - cached)
            assert "prompt_tokens_details" not in usage
        elif cached:
            assert usage["prompt_tokens_details"] == {"cached_tokens": cached}
        else:
            assert "prompt_tokens_details" not in usage  # nothing cached, nothing to say
        # The first token never comes before base + prefill: the client sent before the
        # server's arrival stamp, so no tolerance at all.
        assert reply.ttft_s >= TTFT_MS / 1000 + (words - cached) / PREFILL_RATE

    best_cold = min(r.ttft_s for r in cold)
    best_warm = min(r.ttft_s for r in warm)
    assert best_cold - (TTFT_MS / 1000 + cold_prefill_s) <= BEST_OF_SLACK_S, f"best cold TTFT {best_cold}"
    assert best_warm - (TTFT_MS / 1000 + warm_prefill_s) <= BEST_OF_SLACK_S, f"best warm TTFT {best_warm}"


def test_decode_slows_with_prompt_depth(served: SimulatorProcess, client: httpx.Client) -> None:
    # 600 prompt tokens at K = 1 per 1k: 1.6 x the 5 ms interval of 200 tokens/s = 8 ms.
    interval_s = (1 + DEPTH_K * 0.6) / RATE
    reply = stream(
        client,
        served,
        {**chat_body(prompt(f"deep{served.engine}", 600)), "max_tokens": 40, "ignore_eos": True},
    )
    assert reply.sim["token_interval_ms"] == pytest.approx(interval_s * 1000, abs=1e-9)
    times = [t for t, _ in reply.token_frames()]
    assert len(times) == 40
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # A delay common to both ends of a gap cancels: the median stays ~0 off even loaded;
    # a depth slowdown not applied (5 ms) or applied twice (11 ms) is 3 ms off.
    assert statistics.median(gaps) == pytest.approx(interval_s, abs=interval_s / 4)


# --- tokenizer ---------------------------------------------------------------------------------


def test_tokenize_counts_equal_usage(served: SimulatorProcess, client: httpx.Client) -> None:
    engine, base = served.engine, served.base_url
    text = "The  quick brown\nfox jumps over the lazy dog again and again"
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]
    usage = stream(client, served, {**chat_body(messages), "max_tokens": 1}).usage
    if engine == "nim":  # NIM has no /tokenize
        assert client.post(f"{base}/tokenize", json={"content": text}).status_code == 404
        return
    if engine == "llamacpp":
        whole = client.post(f"{base}/tokenize", json={"content": f"be brief {text}", "add_special": True})
        assert len(whole.json()["tokens"]) == usage["prompt_tokens"] == 14
        pieces = client.post(f"{base}/tokenize", json={"content": "fox fox", "with_pieces": True}).json()
        assert [p["piece"] for p in pieces["tokens"]] == ["fox", "fox"]
        assert pieces["tokens"][0]["id"] == pieces["tokens"][1]["id"]
        props = client.get(f"{base}/props").json()
        assert props["default_generation_settings"]["n_ctx"] > 0
        assert {"total_slots", "model_path", "build_info"} <= props.keys()
        return
    by_messages = client.post(f"{base}/tokenize", json={"model": MODEL, "messages": messages}).json()
    by_prompt = client.post(f"{base}/tokenize", json={"model": MODEL, "prompt": f"be brief {text}"}).json()
    assert by_messages["count"] == by_prompt["count"] == usage["prompt_tokens"] == 14
    assert by_messages["tokens"] == by_prompt["tokens"]
    assert by_messages["max_model_len"] > 0
    wrong_model = client.post(f"{base}/tokenize", json={"model": "other", "prompt": "x"})
    assert wrong_model.status_code == 404
    assert client.get(f"{base}/version").json()["version"].startswith("sim-")


# --- reasoning and natural length --------------------------------------------------------------


def test_reasoning_streams_first_under_the_dialects_field(
    served: SimulatorProcess, client: httpx.Client
) -> None:
    engine = served.engine
    reply = stream(client, served, {**chat_body(prompt("think", 3)), "max_tokens": 10, "ignore_eos": True})
    deltas = [delta for _, delta in reply.token_frames()]
    field_name = REASONING_FIELD[engine]
    assert [set(d) for d in deltas] == [{field_name}] * REASONING + [{"content"}] * (10 - REASONING)
    assert reply.text(field_name) == expected_reasoning(REASONING)
    assert reply.text("content") == expected_text(10 - REASONING)
    assert reply.usage["completion_tokens"] == 10  # reasoning counts as output
    assert reply.usage["completion_tokens_details"] == {"reasoning_tokens": REASONING}
    sim = reply.sim
    assert sim["reasoning_tokens"] == REASONING
    first_answer = sim["first_answer_due_t"] - sim["first_token_due_t"]
    assert first_answer == pytest.approx(REASONING * sim["token_interval_ms"] / 1000, abs=2e-6)
    # The role-only first frame still comes first.
    assert reply.frames[0][1]["choices"][0]["delta"]["role"] == "assistant"

    body = {**chat_body(prompt("think", 3)), "stream": False, "max_tokens": 10, "ignore_eos": True}
    message = client.post(f"{served.base_url}/v1/chat/completions", json=body).json()["choices"][0]["message"]
    assert message[field_name] == expected_reasoning(REASONING)
    assert message["content"] == expected_text(10 - REASONING)


@pytest.mark.parametrize(
    ("extra", "tokens", "finish"),
    [
        ({}, NATURAL, "stop"),  # the model stops on its own
        ({"ignore_eos": True}, 12, "length"),  # benchmark-style fixed length
        ({"min_tokens": 12}, 12, "length"),  # min_tokens reaching max_tokens: the same
        ({"min_tokens": 8, "seed": 7, "temperature": 0.0}, 8, "stop"),  # other fields accepted
    ],
)
def test_natural_length_and_ignore_eos(
    served: SimulatorProcess, client: httpx.Client, extra: dict[str, Any], tokens: int, finish: str
) -> None:
    reply = stream(client, served, {**chat_body(prompt("len", 3)), "max_completion_tokens": 12, **extra})
    assert len(reply.token_frames()) == tokens
    assert reply.usage["completion_tokens"] == tokens
    assert reply.finish_reason == finish
    assert reply.sim["finish_reason"] == finish


def test_llamacpp_timings_come_from_the_plan(served: SimulatorProcess, client: httpx.Client) -> None:
    reply = stream(client, served, {**chat_body(prompt("timed", 100)), "max_tokens": 9, "ignore_eos": True})
    if served.engine != "llamacpp":
        assert "timings" not in reply.last  # llama-server's block only
        return
    timings, sim = reply.last["timings"], reply.sim
    assert (timings["prompt_n"], timings["cache_n"], timings["predicted_n"]) == (100, 0, 9)
    assert timings["prompt_ms"] == pytest.approx(TTFT_MS + 100 / PREFILL_RATE * 1000, abs=1e-5)
    assert timings["predicted_ms"] == pytest.approx(8 * sim["token_interval_ms"], abs=1e-5)
    # llama-server's definition: n tokens over the n - 1 gaps after the first.
    assert timings["predicted_per_second"] == pytest.approx(9 / timings["predicted_ms"] * 1000, rel=1e-6)
    assert timings["prompt_per_second"] == pytest.approx(100 / timings["prompt_ms"] * 1000, rel=1e-6)
    # A whole reply carries the same block.
    body = {**chat_body(prompt("timed", 100)), "stream": False, "max_tokens": 9, "ignore_eos": True}
    whole = client.post(f"{served.base_url}/v1/chat/completions", json=body).json()
    assert whole["timings"]["cache_n"] == 96  # the streamed request cached its 6 whole blocks
    assert whole["timings"]["predicted_n"] == 9


# --- batch slots -------------------------------------------------------------------------------


def test_max_batch_queues_the_request_past_the_limit() -> None:
    batch, ttft_ms, rate, n = 2, 10.0, 50.0, 50  # each sequence holds its slot for ~1 s
    body = {**chat_body(prompt("q", 3)), "max_tokens": n}

    async def run(sim: SimulatorProcess) -> list[Streamed]:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as ac:
            # Fill the batch, then send one more once the server has planned both (their role
            # frames came back): it arrives while both slots are taken, on any machine.
            planned = [asyncio.Event() for _ in range(batch)]
            running = [asyncio.ensure_future(astream(ac, sim, body, e)) for e in planned]
            await asyncio.gather(*(e.wait() for e in planned))
            extra = await astream(ac, sim, body)
            return [*await asyncio.gather(*running), extra]

    args = ("--max-batch", str(batch), "--ttft-ms", f"{ttft_ms:g}", "--tokens-per-s", f"{rate:g}")
    with simulator("vllm", MODEL, *args) as sim:
        sim.wait_event("ready")
        *running, extra = asyncio.run(run(sim))

    sims = [r.sim for r in running]
    assert sorted(s["batch_n"] for s in sims) == [1, 2]
    assert all(s["queued_ms"] == 0.0 for s in sims)
    queued = extra.sim
    # Admitted the moment the first slot freed: the earlier of the two running ends.
    frees_at = min(s["last_token_due_t"] for s in sims)
    assert queued["admitted_t"] == pytest.approx(frees_at, abs=2e-6)
    assert queued["arrival_t"] < frees_at
    assert queued["queued_ms"] == pytest.approx((frees_at - queued["arrival_t"]) * 1000, abs=0.01)
    # The other sequence, if it was still running then, shares the batch with it.
    still_running = sum(s["last_token_due_t"] > frees_at for s in sims)
    assert queued["batch_n"] == 1 + still_running
    assert planned_ttft_s(queued) == pytest.approx(queued["queued_ms"] / 1000 + ttft_ms / 1000, abs=2e-6)
    # As the client lived it: the first token no earlier than the wait plus the TTFT.
    assert extra.ttft_s >= planned_ttft_s(queued)
    assert len(extra.token_frames()) == n
    # The role-only frame came with the first token, after the wait, as vLLM and llama-server send it.
    assert extra.frames[0][0] - extra.sent_at >= planned_ttft_s(queued)


def test_a_disconnected_stream_keeps_its_slot_until_its_planned_end() -> None:
    rate, n = 50.0, 25  # the first request holds the only slot for 24 intervals: 0.48 s
    args = ("--max-batch", "1", "--ttft-ms", "0", "--tokens-per-s", f"{rate:g}")
    with simulator("llamacpp", MODEL, *args) as sim, httpx.Client(timeout=30.0) as c:
        sim.wait_event("ready")
        url = f"{sim.base_url}/v1/chat/completions"
        body = {**chat_body(prompt("gone", 3)), "max_tokens": n}
        with c.stream("POST", url, json=body) as response:
            lines = response.iter_lines()
            while '"content":"Simulated"' not in next(lines):  # the first token is out: hang up
                pass
        second = stream(c, sim, body)
        third = stream(c, sim, body)
    # The slot stayed booked (the schedule of a planned request never moves), then freed.
    assert 0 < second.sim["queued_ms"] <= (n - 1) / rate * 1000
    assert (third.sim["queued_ms"], third.sim["batch_n"]) == (0.0, 1)
    assert len(second.token_frames()) == len(third.token_frames()) == n
