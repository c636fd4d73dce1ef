"""A reasoning model through the project's client, against the simulator as a real process.

``--reasoning-tokens N`` makes the simulator stream the first N tokens of each reply as
thinking, under each dialect's own field (``reasoning_content`` for llama.cpp and NIM,
``reasoning`` for vLLM), and then the answer in ``content``; ``usage.completion_tokens``
counts both. The client must keep the channels apart, stamp each, and still measure TTFT,
gaps and decode rate over every output token.

Timing bounds follow tests/integration/test_simulator.py: load only ever delays, so a bound is
one-sided (never early) or on a median of differences in which a common delay cancels.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterator

import httpx
import pytest

from inference import ANSWER, REASONING, AsyncChatStream, ChatRequest, ChatResult, ChatStream, Piece, chat
from simulator.process import SimulatorProcess
from simulator.tokens import expected_reasoning, expected_text, reasoning_text, token_text
from tests.support import simulator

ENGINES = ("nim", "llamacpp", "vllm")
MODEL = "sim-thinker"
TTFT_MS = 30.0
RATE = 50.0
THINKING = 10  # tokens of thinking before every answer: 0.2 s at RATE
PROMPT = [{"role": "user", "content": "what is two plus two"}]


def request(sim: SimulatorProcess, max_tokens: int, include_usage: bool = True) -> ChatRequest:
    return ChatRequest(sim.base_url, MODEL, PROMPT, max_tokens=max_tokens, include_usage=include_usage)


@pytest.fixture(scope="module", params=ENGINES)
def thinker(request: pytest.FixtureRequest) -> Iterator[SimulatorProcess]:
    """One ready simulated reasoning model per engine dialect."""
    args = ("--ttft-ms", f"{TTFT_MS:g}", "--tokens-per-s", f"{RATE:g}", "--reasoning-tokens", str(THINKING))
    with simulator(request.param, MODEL, *args) as sim:
        sim.wait_event("ready")
        yield sim


def waits(result: ChatResult) -> tuple[float, float]:
    """(time to first thought, time to first answer) of a reply that has both."""
    assert result.ttf_thought_s is not None
    assert result.ttfa_s is not None
    return result.ttf_thought_s, result.ttfa_s


def test_thinking_and_answer_arrive_apart_with_their_own_times(thinker: SimulatorProcess) -> None:
    n = THINKING + 6
    result = chat(request(thinker, n))
    assert result.reasoning == expected_reasoning(THINKING)
    assert result.text == expected_text(n - THINKING)
    assert (result.output_tokens, result.tokens_from_usage, result.finish_reason) == (n, True, "length")
    assert (len(result.reasoning_times), len(result.answer_times)) == (THINKING, n - THINKING)
    # Every output token keeps its stamp in token_times, thinking first: the simulator sends
    # one token per chunk, and never one chunk with both channels.
    assert result.token_times == result.reasoning_times + result.answer_times
    assert result.ttft_s == result.ttf_thought_s
    assert result.ttfa_s is not None
    assert result.ttfa_s > result.ttf_thought_s


def test_each_channel_arrives_no_earlier_than_its_deadline(thinker: SimulatorProcess) -> None:
    # The simulator plans token i at arrival + ttft + i / rate, across both channels, and
    # sent_at is stamped before the request leaves: on any machine, load only adds to these.
    # A client that stamped the first thought as the first answer would put the answer
    # 0.2 s before its deadline.
    results = [chat(request(thinker, THINKING + 2)) for _ in range(5)]
    ttft_s, thinking_s = TTFT_MS / 1000, THINKING / RATE
    phases = []
    for r in results:
        assert r.sim is not None
        planned = r.sim["first_answer_due_t"] - r.sim["first_token_due_t"]
        assert planned == pytest.approx(thinking_s, abs=2e-6)
        thought, answer = waits(r)
        assert thought >= ttft_s
        assert answer >= ttft_s + thinking_s
        phases.append(answer - thought)
    # The thinking phase as the client saw it: first answer minus first thought, a difference
    # in which a delay common to both cancels. A third of the phase fails a phase 1.5x too
    # long or half as long, and a client that mixes the channels' stamps (difference 0).
    assert statistics.median(phases) == pytest.approx(thinking_s, abs=thinking_s / 3)


def test_the_decode_rate_spans_both_channels(thinker: SimulatorProcess) -> None:
    # usage counts the thinking, so the span must too: measured over the answer alone, 29
    # tokens over 0.38 s would read 76 tokens/s instead of 50.
    with httpx.Client() as client:
        results = [chat(request(thinker, THINKING + 20), client) for _ in range(3)]
    rates = [r.tokens_per_s for r in results]
    assert statistics.median(r for r in rates if r is not None) == pytest.approx(RATE, rel=0.2)
    assert all(r.output_tokens == THINKING + 20 for r in results)


def test_without_usage_thinking_chunks_count_as_output(thinker: SimulatorProcess) -> None:
    result = chat(request(thinker, THINKING + 3, include_usage=False))
    assert (result.output_tokens, result.tokens_from_usage) == (THINKING + 3, False)
    assert result.text == expected_text(3)


def test_a_reply_cut_short_while_thinking_has_no_answer(thinker: SimulatorProcess) -> None:
    result = chat(request(thinker, 3))
    assert (result.reasoning, result.text) == (expected_reasoning(3), "")
    assert (result.output_tokens, result.finish_reason) == (3, "length")
    assert result.ttfa_s is None
    assert result.ttft_s == result.ttf_thought_s


def test_streams_yield_the_answer_or_every_piece(thinker: SimulatorProcess) -> None:
    answer_tokens = 3
    expected = [Piece(REASONING, reasoning_text(i)) for i in range(THINKING)]
    expected += [Piece(ANSWER, token_text(i)) for i in range(answer_tokens)]
    req = request(thinker, THINKING + answer_tokens)

    # Plain iteration is the answer alone, as st.write_stream and older callers expect it.
    stream = ChatStream(req)
    assert list(stream) == [token_text(i) for i in range(answer_tokens)]
    assert stream.result.reasoning == expected_reasoning(THINKING)
    assert list(ChatStream(req).pieces()) == expected

    async def both() -> tuple[list[str], list[Piece], ChatResult]:
        answer = [text async for text in AsyncChatStream(req)]
        stream = AsyncChatStream(req)
        pieces = [piece async for piece in stream.pieces()]
        return answer, pieces, stream.result

    answer, pieces, result = asyncio.run(both())
    assert (answer, pieces) == ([token_text(i) for i in range(answer_tokens)], expected)
    assert result.reasoning == expected_reasoning(THINKING)
