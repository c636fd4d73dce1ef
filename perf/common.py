"""What every performance harness shares: progress output, timing, latency summaries and the CLI frame."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    # stdout carries only the JSON result, so it can be piped into a file or jq.
    print(message, file=sys.stderr, flush=True)


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls, one sample each."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "median_ms": round(statistics.median(ms), 4),
        "p90_ms": round(statistics.quantiles(ms, n=10)[8], 4),
        "min_ms": round(ms[0], 4),
        "max_ms": round(ms[-1], 4),
    }


def percentiles_ms(latencies_s: list[float], goals: dict[str, float]) -> dict[str, Any]:
    """p50/p90/p99 of ``latencies_s`` and whether each ``goals`` entry (name -> ms) was met."""
    ms = sorted(x * 1000 for x in latencies_s)
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    figures = {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(cuts[89], 1),
        "p99_ms": round(cuts[98], 1),
        "min_ms": round(ms[0], 1),
        "max_ms": round(ms[-1], 1),
    }
    met = all(figures[f"{name}_ms"] <= goal for name, goal in goals.items())
    return {**figures, "goal_ms": goals, "met": met}


def add_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go (default: a temp dir)")


def run_and_print(
    args: argparse.Namespace, run: Callable[[argparse.Namespace, Path], dict[str, Any]], prefix: str
) -> None:
    """Run in ``args.dir`` (kept afterwards) or in a temp dir, and print the result as JSON."""
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        result = run(args, args.dir)
    else:
        with tempfile.TemporaryDirectory(prefix=prefix) as folder:
            result = run(args, Path(folder))
    print(json.dumps(result, indent=2))
