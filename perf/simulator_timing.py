"""Simulator timing precision: how close a client sees tokens to the times the simulator promises.

    .venv/bin/python -m perf.simulator_timing                         # all engines, ~30 s
    .venv/bin/python -m perf.simulator_timing --engines vllm --streams 0

Prints one JSON document to stdout (progress goes to stderr). The integration tests check the
simulator's timing with bounds that hold on a loaded 2-core CI machine (they catch a 2x wrong
TTFT or rate, a token before its time, drift); the precision figures live here. Run it on a
quiet machine: the figures are only as good as the CPU the client and the simulator get.

Per engine, through the project's own client (``inference.chat`` / ``achat``):

- ``ttft_error``: client TTFT (request sent -> first text chunk) minus the configured TTFT.
- ``gap_error``: each inter-token gap minus ``1 / rate``.
- ``schedule_error``: each token's arrival after the request was sent minus ``ttft + i / rate``;
  drift would grow with ``i``, so ``drift`` compares the last tokens of long replies with the first.
- ``client_lateness``: each token's arrival against the deadline the simulator set for it
  (its ``"sim"`` report), which leaves out the request's way to the server.
- ``server_late``: the simulator's own account of how late it sent (``mean_late_ms`` and
  ``max_late_ms`` per reply): what is left once the client and the wire are taken out.
- ``concurrent``: ``--streams`` open-loop streams at once (one started every ``--spacing-ms``),
  each token's lateness against the simulator's deadline, and inter-token gap errors.

Goal: every p50 within ``--goal-ms`` (default 2 ms), the precision the simulator is built for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

import httpx

from inference import ChatRequest, ChatResult, achat, chat
from lifecycle.runtimes.ports import free_port
from perf.common import log, percentiles_ms
from simulator.process import SimulatorProcess

ENGINES = ("nim", "llamacpp", "vllm")
MODEL = "sim-perf"
PROMPT = [{"role": "user", "content": "three word prompt"}]
DRIFT_TOKENS = 5  # how many tokens at each end of a long reply the drift figure compares


def to_epoch_offset() -> float:
    """Add to a ``perf_counter`` reading to get the epoch the simulator's reports use."""
    return time.time() - time.perf_counter()


def deadlines_epoch(result: ChatResult) -> list[float]:
    """The epoch at which the simulator meant to send each token of ``result``."""
    sim = result.sim
    if sim is None:
        raise RuntimeError("the reply carries no simulator report")
    rate = float(sim["tokens_per_s"])
    return [float(sim["first_token_due_t"]) + i / rate for i in range(len(result.token_times))]


def lateness(results: Sequence[ChatResult], to_epoch: float) -> list[float]:
    """Each token's arrival here against the deadline the simulator set for it, in seconds."""
    return [
        t + to_epoch - due for r in results for t, due in zip(r.token_times, deadlines_epoch(r), strict=True)
    ]


def figures(values_s: Sequence[float]) -> dict[str, Any]:
    """n, p50, p90, p99, min and max in ms, without a goal."""
    found = percentiles_ms(list(values_s), {})
    return {key: value for key, value in found.items() if key not in ("goal_ms", "met")}


def errors(values_s: Sequence[float], goal_ms: float) -> dict[str, Any]:
    """``figures`` of signed errors, and whether their median is within ``goal_ms`` of zero."""
    found = figures(values_s)
    return {**found, "goal_abs_p50_ms": goal_ms, "met": abs(found["p50_ms"]) <= goal_ms}


def sequential(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    ttft_s, rate = args.ttft_ms / 1000.0, args.rate
    sim_args = ("--ttft-ms", f"{args.ttft_ms:g}", "--tokens-per-s", f"{rate:g}")
    lengths = [2] * args.short + [args.long_tokens] * args.long
    with SimulatorProcess(engine, MODEL, free_port(), sim_args) as sim, httpx.Client() as client:
        sim.wait_event("ready")
        to_epoch = to_epoch_offset()
        for _ in range(3):  # warm the keep-alive connection and both processes' code paths
            chat(ChatRequest(sim.base_url, MODEL, PROMPT, max_tokens=2), client)
        results = [chat(ChatRequest(sim.base_url, MODEL, PROMPT, max_tokens=n), client) for n in lengths]

    def schedule_errors(r: ChatResult) -> list[float]:
        return [(t - r.sent_at) - (ttft_s + i / rate) for i, t in enumerate(r.token_times)]

    long = [r for r in results if len(r.token_times) == args.long_tokens]
    head = [e for r in long for e in schedule_errors(r)[:DRIFT_TOKENS]]
    tail = [e for r in long for e in schedule_errors(r)[-DRIFT_TOKENS:]]
    sims = [r.sim for r in results if r.sim is not None]
    goal = args.goal_ms
    return {
        "ttft_ms": args.ttft_ms,
        "tokens_per_s": rate,
        "replies": len(results),
        "ttft_error": errors([r.ttft_s - ttft_s for r in results if r.ttft_s is not None], goal),
        "gap_error": errors([g - 1 / rate for r in results for g in r.inter_token_s], goal),
        "schedule_error": errors([e for r in results for e in schedule_errors(r)], goal),
        "drift_ms": round((statistics.median(tail) - statistics.median(head)) * 1000.0, 3) if long else None,
        "client_lateness": errors(lateness(results, to_epoch), goal),
        "server_late": server_late(sims),
    }


def server_late(sims: Sequence[Any]) -> dict[str, Any]:
    """The simulator's self-reported lateness, one figure per reply."""
    return {
        "mean_late_ms": figures([s["mean_late_ms"] / 1000.0 for s in sims]),
        "max_late_ms": figures([s["max_late_ms"] / 1000.0 for s in sims]),
    }


def concurrent(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    """``args.streams`` streams, one started every ``args.spacing_ms``: a load generator's schedule."""
    ttft_ms, rate, n = 100.0, 5.0, 10
    sim_args = ("--ttft-ms", f"{ttft_ms:g}", "--tokens-per-s", f"{rate:g}")

    async def run_all(base_url: str) -> list[ChatResult]:
        request = ChatRequest(base_url, MODEL, PROMPT, max_tokens=n)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(limits=limits) as client:

            async def one(k: int) -> ChatResult:
                await asyncio.sleep(k * args.spacing_ms / 1000.0)
                return await achat(request, client)

            return await asyncio.gather(*(one(k) for k in range(args.streams)))

    with SimulatorProcess(engine, MODEL, free_port(), sim_args) as sim:
        sim.wait_event("ready")
        to_epoch = to_epoch_offset()
        results = asyncio.run(run_all(sim.base_url))
    return {
        "streams": args.streams,
        "spacing_ms": args.spacing_ms,
        "ttft_ms": ttft_ms,
        "tokens_per_s": rate,
        "tokens_per_stream": n,
        "client_lateness": errors(lateness(results, to_epoch), args.goal_ms),
        "gap_error": errors([g - 1 / rate for r in results for g in r.inter_token_s], args.goal_ms),
        "server_late": server_late([r.sim for r in results if r.sim is not None]),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated")
    parser.add_argument("--ttft-ms", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second")
    parser.add_argument("--short", type=int, default=100, help="2-token replies (TTFT samples)")
    parser.add_argument("--long", type=int, default=6, help="long replies (gaps and drift)")
    parser.add_argument("--long-tokens", type=int, default=50, help="tokens per long reply")
    parser.add_argument("--streams", type=int, default=100, help="concurrent streams (0 skips that part)")
    parser.add_argument("--spacing-ms", type=float, default=10.0, help="between concurrent stream starts")
    parser.add_argument("--goal-ms", type=float, default=2.0, help="the p50 every error should stay within")
    args = parser.parse_args(argv)
    if args.long_tokens < 2 * DRIFT_TOKENS:
        parser.error(f"--long-tokens must be at least {2 * DRIFT_TOKENS}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    engines: dict[str, Any] = {}
    for engine in (e for e in args.engines.split(",") if e):
        log(f"{engine}: {args.short} short and {args.long} long replies, one at a time")
        engines[engine] = {"sequential": sequential(engine, args)}
        if args.streams:
            log(f"{engine}: {args.streams} concurrent streams")
            engines[engine]["concurrent"] = concurrent(engine, args)
    figures = [value for per in engines.values() for part in per.values() for value in part.values()]
    met = all(f["met"] for f in figures if isinstance(f, dict) and "met" in f)
    return {
        # Everything here is only as good as the CPU the client and the simulator got.
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1m_at_start": round(load_before, 2),
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "goal_p50_ms": args.goal_ms,
        "engines": engines,
        "met": met,
    }


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
