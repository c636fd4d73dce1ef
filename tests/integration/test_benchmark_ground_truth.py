"""The benchmark against the simulator, whose timing is ground truth: what it measures must be
what the simulator was told to do.

Tolerances are the issue's: TTFT and ITL p50 within 2 ms or 2% (whichever is wider), depth pp
and tg within 3%, token counts equal to usage, and the throughput knee where the batch fills.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmark.execute import Job, execute
from benchmark.records import RunRecord, RunStatus
from benchmark.server_info import discover
from benchmark.workload import DepthWorkload, LengthSpec, SweepWorkload
from db.benchmark_store import BenchmarkStore
from simulator.process import SimulatorProcess
from tests.support import simulator

pytestmark = pytest.mark.timeout(240)


def measure(
    sim: SimulatorProcess, workload: SweepWorkload | DepthWorkload, benchmark_store: BenchmarkStore
) -> RunRecord:
    sim.wait_event("ready")
    target, meta = discover(sim.base_url)
    run = execute(Job(target, workload, meta), benchmark_store)
    stored = benchmark_store.get(run.run_id)
    assert stored is not None
    assert stored.status == run.status
    assert stored.results == run.results  # what is shown later is what was measured now
    # Each level keeps the runner's own CPU share beside its lag: a runner near a whole core
    # starts merging frames into one read, which the lag alone does not show.
    assert all(0 < health["cpu_share"] <= 4 for health in stored.health), stored.health
    return run


def close(measured: float | None, truth: float, *, abs_ms: float = 2.0, rel: float = 0.02) -> bool:
    return measured is not None and abs(measured - truth) <= max(abs_ms, rel * truth)


def levels(run: RunRecord) -> list[dict[str, Any]]:
    return list(run.results["levels"])


def vouched(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The levels (or cells) whose timing the runner vouches for.

    On a starved machine the runner marks a level invalid, with its loop lag or send slip,
    rather than report inflated latencies; that verdict is the product working. Such levels
    are not held to the 2 ms: each must say why, and if none is left to judge the test skips
    with the figures (the suite's timing bounds hold beside CPU burners; this one cannot).
    """
    for entry in entries:
        if not entry["valid"]:
            assert " ms > " in entry["invalid_reason"], entry["invalid_reason"]
    valid = [entry for entry in entries if entry["valid"]]
    if not valid:
        pytest.skip("too busy to judge timing: " + "; ".join(e["invalid_reason"] for e in entries))
    return valid


@pytest.mark.parametrize(
    ("levels_", "requests", "tokens_per_s"), [([1, 8], 32, 50.0), ([64], 192, 25.0)], ids=["c1-c8", "c64"]
)
def test_ttft_and_itl_match_the_simulator_at_concurrency_1_8_and_64(
    levels_: list[int], requests: int, tokens_per_s: float, benchmark_store: BenchmarkStore
) -> None:
    # 64 streams at 25 tokens/s (1,600 chunks/s) stay well inside what the simulator sends on
    # time on two cores beside the runner; output lengths vary (16 +- 4) as real replies do, so
    # the closed loop does not march in lockstep and turn every wave into one burst of arrivals.
    ttft_ms = 40.0
    # The role-only frame on arrival: a client that took it for the first token would read ~0.
    args = ("--ttft-ms", f"{ttft_ms:g}", "--tokens-per-s", f"{tokens_per_s:g}", "--early-role-frame")
    with simulator("vllm", "truth", *args) as sim:
        workload = SweepWorkload(
            concurrency=levels_,
            requests_per_level=requests,
            input_tokens=LengthSpec(mean=64),
            output_tokens=LengthSpec(mean=16, sd=4),
        )
        run = measure(sim, workload, benchmark_store)
    assert run.status in (RunStatus.COMPLETE, RunStatus.INVALID), run.error
    itl_ms = 1000.0 / tokens_per_s
    for level in levels(run):
        where = f"concurrency {level['concurrency']}"
        assert level["completed"] == requests, where
        assert level["errors"] == 0, where
        # A chunk is not a token, but here each carries one: usage and frames must agree exactly.
        assert level["tokens_from_usage"] is True, where
        reconciliation = level["reconciliation"]
        assert reconciliation["flagged"] is False, (where, reconciliation)
        assert reconciliation["usage_tokens"] == reconciliation["frame_tokens"], (where, reconciliation)
        assert level["output_length_honoured"]["fraction"] == 1.0, where
    for level in vouched(levels(run)):
        where = f"concurrency {level['concurrency']}"
        # The role-only frame goes out the moment the simulator takes the request, so TTFR is
        # the way there plus the wait in its accept queue, and TTFT is that plus the TTFT it
        # was told to keep. Measured from there the client must be within 2 ms; from the send,
        # too, whenever the simulator took requests at once (a busy machine queues a burst of
        # 64 arrivals, which is the server's delay, honestly reported, not the client's).
        ttfr = level["ttfr_ms"]["p50"]
        assert ttfr < ttft_ms / 2, (where, level["ttfr_ms"])  # never taken for the first token
        assert close(level["ttft_ms"]["p50"], ttft_ms + ttfr), (where, level["ttft_ms"], ttfr)
        if ttfr <= 1.0:
            assert close(level["ttft_ms"]["p50"], ttft_ms), (where, level["ttft_ms"])
        assert close(level["itl_ms"]["p50"], itl_ms), (where, level["itl_ms"])


def test_depth_pp_and_tg_match_the_configured_rates(benchmark_store: BenchmarkStore) -> None:
    prefill, decode, slowdown = 2000.0, 50.0, 0.2
    args = ("--ttft-ms", "30", "--tokens-per-s", f"{decode:g}", "--prefill-tokens-per-s", f"{prefill:g}")
    with simulator("vllm", "depth", *args, "--decode-slowdown-per-1k", f"{slowdown:g}") as sim:
        workload = DepthWorkload(pp=[512], tg=[16], depths=[0, 1024, 2048], runs=3)
        run = measure(sim, workload, benchmark_store)
    assert run.status in (RunStatus.COMPLETE, RunStatus.INVALID), run.error
    cells = run.results["cells"]
    assert [cell["depth"] for cell in cells] == [0, 1024, 2048]
    for cell in vouched(cells):
        prompt_tokens = cell["prompt_tokens"]["mean"]
        # The calibration hits the requested size within a few tokens (the simulator counts words).
        assert abs(prompt_tokens - (cell["pp"] + cell["depth"])) <= 0.02 * (cell["pp"] + cell["depth"]) + 4
        assert cell["pp_tps"]["n"] == 3
        assert close(cell["pp_tps"]["mean"], prefill, abs_ms=0, rel=0.03), cell
        # Decode slows with the context the sequence holds: the whole prompt.
        expected_tg = decode / (1 + slowdown * prompt_tokens / 1000)
        assert close(cell["tg_tps"]["mean"], expected_tg, abs_ms=0, rel=0.03), (cell, expected_tg)
    assert cells[2]["tg_tps"]["mean"] < cells[0]["tg_tps"]["mean"]


def test_prefix_cache_mode_measures_only_the_prompt_over_the_cached_context(
    benchmark_store: BenchmarkStore,
) -> None:
    prefill = 2000.0
    args = ("--ttft-ms", "30", "--tokens-per-s", "100", "--prefill-tokens-per-s", f"{prefill:g}")
    with simulator("vllm", "cached", *args) as sim:
        # pp 1024: half a second of prefill, so a few ms of noise stay well inside the 3%.
        workload = DepthWorkload(pp=[1024], tg=[8], depths=[2048], runs=3, prefix_cache=True)
        run = measure(sim, workload, benchmark_store)
    (cell,) = vouched(run.results["cells"])
    # Nearly all of the context came from the cache (whole 16-token blocks), reported by the server.
    assert cell["cached_tokens"]["mean"] >= 2048 - 16, cell
    assert close(cell["pp_tps"]["mean"], prefill, abs_ms=0, rel=0.03), cell
    # Without the cache mode, the same cell would have to process the whole context again.
    assert cell["ttft_ms"]["p50"] < 30 + (2048 + 1024) / prefill * 1000 * 0.6


def test_a_fresh_prompt_per_run_defeats_the_prefix_cache(benchmark_store: BenchmarkStore) -> None:
    prefill = 4000.0
    args = ("--ttft-ms", "10", "--tokens-per-s", "200", "--prefill-tokens-per-s", f"{prefill:g}")
    with simulator("vllm", "busted", *args) as sim:
        run = measure(sim, DepthWorkload(pp=[1024], tg=[4], depths=[0], runs=4), benchmark_store)
    (cell,) = vouched(run.results["cells"])
    assert cell["cached_tokens"]["mean"] < 16, cell  # at most a shared template block
    assert close(cell["pp_tps"]["mean"], prefill, abs_ms=0, rel=0.03), cell


def test_throughput_bends_at_the_configured_batch_capacity(benchmark_store: BenchmarkStore) -> None:
    batch = 8
    args = ("--ttft-ms", "10", "--tokens-per-s", "100", "--max-batch", str(batch))
    with simulator("vllm", "knee", *args) as sim:
        workload = SweepWorkload(
            concurrency=[2, 4, 8, 16, 32],
            requests_per_level=64,
            input_tokens=LengthSpec(mean=32),
            output_tokens=LengthSpec(mean=32),
        )
        run = measure(sim, workload, benchmark_store)
    by_c = {level["concurrency"]: level for level in levels(run)}
    tput = {c: by_c[c]["output_tokens_per_s"] for c in by_c}
    # Below the knee, twice the concurrency gives about twice the throughput ...
    assert tput[4] / tput[2] > 1.7, tput
    assert tput[8] / tput[4] > 1.7, tput
    # ... past it, the batch is full: throughput stays flat and requests queue for a slot.
    assert tput[16] / tput[8] < 1.15, tput
    assert tput[32] / tput[8] < 1.15, tput
    assert by_c[32]["ttft_ms"]["p50"] > 5 * by_c[8]["ttft_ms"]["p50"], (
        by_c[8]["ttft_ms"],
        by_c[32]["ttft_ms"],
    )


@pytest.mark.parametrize("dialect", ["vllm", "llamacpp"])
def test_reasoning_tokens_count_for_ttft_and_the_answer_for_ttfa(
    dialect: str, benchmark_store: BenchmarkStore
) -> None:
    thoughts, tokens_per_s = 10, 100.0
    args = ("--ttft-ms", "30", "--tokens-per-s", f"{tokens_per_s:g}", "--reasoning-tokens", str(thoughts))
    # The early role frame marks when the simulator took each request (see the sweep test).
    with simulator(dialect, "thinker", *args, "--early-role-frame") as sim:
        workload = SweepWorkload(
            concurrency=[2],
            requests_per_level=8,
            input_tokens=LengthSpec(mean=16),
            output_tokens=LengthSpec(mean=24),
        )
        run = measure(sim, workload, benchmark_store)
    (level,) = vouched(levels(run))
    # TTFT is the first thought, counted from when the simulator took the request: two arrivals
    # at once wait on each other in its accept queue, which is the server's time, not the client's.
    ttfr = level["ttfr_ms"]["p50"]
    assert close(level["ttft_ms"]["p50"], 30.0 + ttfr), (level["ttft_ms"], ttfr)
    # The answer starts after the thinking: TTFA = TTFT + the reasoning tokens' time.
    thinking_ms = thoughts * 1000 / tokens_per_s
    assert close(level["ttfa_ms"]["p50"], 30.0 + ttfr + thinking_ms), (level["ttfa_ms"], ttfr)
    # Thinking tokens are output tokens: usage counts them and so do the frames.
    assert level["reconciliation"]["flagged"] is False, level["reconciliation"]
    assert level["reconciliation"]["usage_tokens"] == 8 * 24
