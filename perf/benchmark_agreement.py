"""Do our benchmark's figures agree with the anchors' on identical settings? Goal: within 5%.

    .venv/bin/python -m perf.benchmark_agreement                  # ~4 min on 2 cores
    .venv/bin/python -m perf.benchmark_agreement --skip llama-benchy --repeats 1

Prints one JSON document (progress goes to stderr), in two parts, each next to the simulator's
configured truth:

- ``latency``: TTFT p50 and ITL p50, our sweep (``run_sweep`` + ``level_summary``) vs AIPerf
  0.13, at each concurrency, against one simulator (``--ttft-ms 50 --tokens-per-s 100``): the
  same request count, output length and warm-up (one request per stream, AIPerf's default in
  ``perf.anchors``). Input length: ours asks the server for ``--isl`` tokens; AIPerf counts its
  ``--isl`` with the anchors' BPE tokenizer, which makes ~half as many simulator words (64 -> ~31)
  - the simulator here has no prefill cost, so prompt length does not move the timing; both
  servers' counts are shown. AIPerf's own split of its TTFT (request write, wait for the first
  byte) is shown too: under load its write phase grows, and with it its TTFT. Closed loops of
  equal replies start their streams in bursts, and the simulator takes its requests in one by
  one (~0.45 ms each: a bare aiohttp burst saw its arrival stamps ~1, 4 and 14 ms late at 1, 8
  and 32), so at c >= 8 every client's TTFT sits above the configured 50 ms.
- ``depth``: pp t/s and tg t/s, our depth mode (``run_depth`` + ``run_summary`` with the run's
  latency floor, as benchmark/execute.py ``summarise`` does) vs llama-benchy 0.4, same pp, tg,
  depths and runs, against one simulator with a prefill rate and a decode slowdown
  (``--prefill-tokens-per-s 2000 --tokens-per-s 50 --decode-slowdown-per-1k 0.1``), its base
  TTFT at 0 (so prompt time is prefill alone, what both tools' pp means) and its prefix cache
  off (so no tool's reuse of text is rewarded). Truth: pp = the prefill rate; tg = rate / (1 +
  K * prompt tokens / 1000).

What llama-benchy needed to run on the benchmark's own text (benchmark/corpus/*.txt,
concatenated): the text over HTTP from 127.0.0.1 (``file://`` fails; ``perf.anchors`` serves it
with ``python -m http.server``) and a tokenizer directory. With the anchors' BPE tokenizer
(``perf.anchors.tokenizer``, trained on other text) it counts this text at several tokens per
simulator word, cuts prompts far shorter than asked, and divides by its own count (it trusts the
server's usage only within 20% of what it asked for): measured here, pp read 4005 and 4143 t/s
against a true 2000, and tg drifted with the shorter prompt. With a whitespace word-level
tokenizer trained on the same text (``perf.bench_support.ensure_word_tokenizer``) its counts
are the simulator's (its warm-up reports a delta of 0), as a real model's own tokenizer would
make them against a real server.

Runs alternate (ours first, then the anchor first) over ``--repeats`` rounds; figures are the
medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmark.metrics import level_summary, measured, runner_health
from benchmark.records import RunRecord
from benchmark.runner import run_blocking, run_depth, run_sweep
from benchmark.transport import Target
from benchmark.workload import DepthWorkload, LengthSpec, SweepWorkload
from perf.anchors.aiperf import run_aiperf
from perf.anchors.llama_benchy import run_llama_benchy
from perf.anchors.tokenizer import ensure_tokenizer
from perf.anchors.venvs import AIPERF, LLAMA_BENCHY
from perf.bench_support import (
    MODEL,
    SimFarm,
    anchor_ready,
    ensure_corpus_book,
    ensure_word_tokenizer,
    machine,
    median,
    rel_diff,
    simulators,
)
from perf.common import add_dir_argument, log, run_and_print

GOAL = 0.05


def within(diff: float | None) -> bool | None:
    return None if diff is None else abs(diff) <= GOAL


def ms(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


# --- latency: ours vs AIPerf -------------------------------------------------------------------


def ours_latency(farm: SimFarm, concurrency: int, requests: int, args: argparse.Namespace) -> dict[str, Any]:
    workload = SweepWorkload(
        concurrency=[concurrency],
        requests_per_level=requests,
        input_tokens=LengthSpec(mean=args.isl),
        output_tokens=LengthSpec(mean=args.osl),
    )
    outcome = run_blocking(run_sweep(Target(farm.url, MODEL, engine="vllm"), workload))
    level = [r for r in outcome.records if r.level == 0]
    health = outcome.health[0] if outcome.health else {"lag_ms": [], "slip_ms": []}
    summary = level_summary(level, health=runner_health(health["lag_ms"], health["slip_ms"]))
    prompts = [r.prompt_tokens for r in measured(level) if r.prompt_tokens is not None]
    result = {
        "ttft_p50_ms": ms(summary["ttft_ms"]["p50"]),
        "itl_p50_ms": ms(summary["itl_ms"]["p50"]),
        "ttft_p99_ms": ms(summary["ttft_ms"]["p99"]),
        "itl_p99_ms": ms(summary["itl_ms"]["p99"]),
        "completed": summary["completed"],
        "errors": summary["errors"],
        "server_prompt_tokens_mean": round(sum(prompts) / len(prompts), 1) if prompts else None,
        "valid": summary["valid"],
        "lag_p99_ms": ms(runner_health(health["lag_ms"], health["slip_ms"])["lag_p99_ms"]),
    }
    log(f"  ours   c={concurrency:<3d} ttft p50 {result['ttft_p50_ms']} ms itl p50 {result['itl_p50_ms']} ms")
    return result


def aiperf_latency(
    farm: SimFarm, concurrency: int, requests: int, tokenizer: Path, folder: Path, args: argparse.Namespace
) -> dict[str, Any]:
    found = run_aiperf(farm.url, MODEL, concurrency, requests, args.isl, args.osl, tokenizer, folder)
    summary = json.loads((folder / "profile_export_aiperf.json").read_text())
    prompt = (summary.get("usage_prompt_tokens") or {}).get("avg")
    # Where its TTFT goes, per profiled request: writing the request (its loop's send delay
    # shows here) and waiting for the first byte.
    rows = [json.loads(line) for line in (folder / "profile_export.jsonl").read_text().splitlines() if line]
    profiled = [row["metrics"] for row in rows if row["metadata"].get("benchmark_phase") == "profiling"]

    def p50(metric: str) -> float | None:
        return median([(m.get(metric) or {}).get("value") for m in profiled])

    result = {
        "ttft_p50_ms": found["ttft_p50_ms"],
        "itl_p50_ms": found["itl_p50_ms"],
        "ttft_p99_ms": found["ttft_p99_ms"],
        "itl_p99_ms": found["itl_p99_ms"],
        "completed": found["request_count"],
        "error_rate_pct": found["error_rate_pct"],
        "server_prompt_tokens_mean": round(float(prompt), 1) if prompt is not None else None,
        "http_req_sending_p50_ms": p50("http_req_sending"),
        "http_req_waiting_p50_ms": p50("http_req_waiting"),
    }
    log(f"  aiperf c={concurrency:<3d} ttft p50 {result['ttft_p50_ms']} ms itl p50 {result['itl_p50_ms']} ms")
    return result


def latency_part(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    levels = [int(c) for c in args.concurrency.split(",")]
    truth = {"ttft_ms": args.ttft_ms, "itl_ms": round(1000.0 / args.tokens_per_s, 3)}
    part: dict[str, Any] = {
        "simulator": {"engine": "vllm", "ttft_ms": args.ttft_ms, "tokens_per_s": args.tokens_per_s},
        "truth": truth,
        "settings": {"isl": args.isl, "osl": args.osl, "requests": {}},
    }
    install = anchor_ready(AIPERF) if "aiperf" not in args.skip else "--skip aiperf"
    if isinstance(install, str):
        part["aiperf_skipped"] = install
    tokenizer = ensure_tokenizer() if not isinstance(install, str) else None
    raw: dict[tuple[str, int], list[dict[str, Any]]] = {}
    sim_args = ("--ttft-ms", f"{args.ttft_ms:g}", "--tokens-per-s", f"{args.tokens_per_s:g}")
    with simulators(1, sim_args) as farm:
        for repeat in range(args.repeats):
            for index, c in enumerate(levels):
                requests = max(args.min_requests, args.requests_per_stream * c)
                part["settings"]["requests"][str(c)] = requests
                clients = ["ours", "aiperf"] if (repeat + index) % 2 == 0 else ["aiperf", "ours"]
                if tokenizer is None:
                    clients = ["ours"]
                log(f"latency repeat {repeat + 1}/{args.repeats} c={c}: {', '.join(clients)}")
                for client in clients:
                    if client == "ours":
                        found = ours_latency(farm, c, requests, args)
                    else:
                        assert tokenizer is not None
                        out = folder / f"aiperf-c{c}-r{repeat}"
                        found = aiperf_latency(farm, c, requests, tokenizer, out, args)
                    raw.setdefault((client, c), []).append(found)
    levels_out: dict[str, Any] = {}
    for c in levels:
        ours = {k: median([r[k] for r in raw[("ours", c)]]) for k in raw[("ours", c)][0] if k != "valid"}
        theirs = (
            {k: median([r[k] for r in raw[("aiperf", c)]]) for k in raw[("aiperf", c)][0]}
            if ("aiperf", c) in raw
            else None
        )
        entry: dict[str, Any] = {"ours": ours, "aiperf": theirs, "ours_runs": raw[("ours", c)]}
        for metric in ("ttft_p50_ms", "itl_p50_ms"):
            diff = rel_diff(ours[metric], theirs[metric] if theirs else None)
            entry[f"{metric.removesuffix('_ms')}_rel_diff"] = diff
            entry[f"{metric.removesuffix('_ms')}_within_5pct"] = within(diff)
            key = "ttft_ms" if metric.startswith("ttft") else "itl_ms"
            entry[f"{metric.removesuffix('_ms')}_ours_vs_truth"] = rel_diff(ours[metric], truth[key])
            if theirs:
                entry[f"{metric.removesuffix('_ms')}_aiperf_vs_truth"] = rel_diff(theirs[metric], truth[key])
        levels_out[str(c)] = entry
    part["levels"] = levels_out
    return part


# --- depth: ours vs llama-benchy ---------------------------------------------------------------


def ours_depth(farm: SimFarm, args: argparse.Namespace) -> dict[tuple[int, int, int], dict[str, Any]]:
    # Lazy: benchmark.execute pulls in the lifecycle events; only its summarise is mirrored here.
    from benchmark.metrics import run_summary

    workload = DepthWorkload(pp=args.pp, tg=args.tg, depths=args.depths, runs=args.runs)
    outcome = run_blocking(run_depth(Target(farm.url, MODEL, engine="vllm"), workload))
    # As benchmark/execute.py summarise: cancelled requests out, the run's latency floor in.
    records = [r for r in outcome.records if r.error_class != "Cancelled"]
    run = RunRecord(
        run_id="agreement",
        kind="depth",
        base_url=farm.url,
        workload=workload.model_dump(mode="json"),
        started_at=time.time(),
        health=[dict(runner_health(h["lag_ms"], h["slip_ms"])) for h in outcome.health],
        requests=records,
    )
    summary = run_summary(run, latency_floor_ns=outcome.latency_floor_ns or 0)
    cells: dict[tuple[int, int, int], dict[str, Any]] = {}
    for cell in summary["cells"]:
        cells[(cell["pp"], cell["tg"], cell["depth"])] = {
            "pp_tps": cell["pp_tps"]["mean"],
            "tg_tps": cell["tg_tps"]["mean"],
            "prompt_tokens": cell["prompt_tokens"]["mean"],
            "latency_floor_ms": cell["latency_floor_ms"],
            "completed": cell["completed"],
        }
    shown = [(k, round(v["pp_tps"] or 0), round(v["tg_tps"] or 0, 2)) for k, v in cells.items()]
    log(f"  ours depth: {shown}")
    return cells


def benchy_depth(
    farm: SimFarm, tokenizer: Path, book: Path, args: argparse.Namespace
) -> tuple[dict[tuple[int, int, int], dict[str, Any]], list[str]]:
    found = run_llama_benchy(farm.url, MODEL, args.pp, args.tg, args.depths, args.runs, tokenizer, book)
    cells = {
        (r["pp"], r["tg"], r["depth"]): {"pp_tps": r["pp_tps"], "tg_tps": r["tg_tps"]}
        for r in found["results"]
        if r["concurrency"] == 1
    }
    log(f"  llama-benchy: {[(k, v['pp_tps'], v['tg_tps']) for k, v in cells.items()]}")
    return cells, found["notes"]


def depth_part(args: argparse.Namespace) -> dict[str, Any]:
    sim = {
        "engine": "vllm",
        "ttft_ms": 0,
        "prefill_tokens_per_s": args.prefill_tokens_per_s,
        "tokens_per_s": args.depth_tokens_per_s,
        "decode_slowdown_per_1k": args.decode_slowdown_per_1k,
        "prefix_cache_tokens": 0,
    }
    part: dict[str, Any] = {
        "simulator": sim,
        "settings": {"pp": args.pp, "tg": args.tg, "depths": args.depths, "runs": args.runs},
    }
    install = anchor_ready(LLAMA_BENCHY) if "llama-benchy" not in args.skip else "--skip llama-benchy"
    tokenizer = book = None
    if isinstance(install, str):
        part["llama_benchy_skipped"] = install
    else:
        book = ensure_corpus_book()
        tokenizer = ensure_word_tokenizer(book)
        part["llama_benchy_inputs"] = {"book": str(book), "tokenizer": str(tokenizer)}
    sim_args = (
        *("--ttft-ms", "0", "--tokens-per-s", f"{args.depth_tokens_per_s:g}"),
        *("--prefill-tokens-per-s", f"{args.prefill_tokens_per_s:g}"),
        *("--decode-slowdown-per-1k", f"{args.decode_slowdown_per_1k:g}", "--prefix-cache-tokens", "0"),
    )
    ours_runs: list[dict[tuple[int, int, int], dict[str, Any]]] = []
    theirs_runs: list[dict[tuple[int, int, int], dict[str, Any]]] = []
    notes: list[str] = []
    with simulators(1, sim_args) as farm:
        for repeat in range(args.repeats):
            clients = ["ours", "llama-benchy"] if repeat % 2 == 0 else ["llama-benchy", "ours"]
            if tokenizer is None or book is None:
                clients = ["ours"]
            log(f"depth repeat {repeat + 1}/{args.repeats}: {', '.join(clients)}")
            for client in clients:
                if client == "ours":
                    ours_runs.append(ours_depth(farm, args))
                else:
                    assert tokenizer is not None
                    assert book is not None
                    cells, notes = benchy_depth(farm, tokenizer, book, args)
                    theirs_runs.append(cells)
    part["llama_benchy_notes"] = notes
    out = []
    for key in ours_runs[0]:
        pp, tg, depth = key
        ours = {m: median([run[key][m] for run in ours_runs]) for m in ours_runs[0][key]}
        theirs = (
            {m: median([run.get(key, {}).get(m) for run in theirs_runs]) for m in ("pp_tps", "tg_tps")}
            if theirs_runs
            else None
        )
        # Truth at the prompt the server counted for us; llama-benchy's prompt is pp + depth of
        # the same words (its tokenizer counts as the simulator does).
        prompt = ours["prompt_tokens"] or pp + depth
        truth_tg = args.depth_tokens_per_s / (1 + args.decode_slowdown_per_1k * prompt / 1000)
        entry: dict[str, Any] = {
            "pp": pp,
            "tg": tg,
            "depth": depth,
            "truth": {"pp_tps": args.prefill_tokens_per_s, "tg_tps": round(truth_tg, 3)},
            "ours": ours,
            "llama_benchy": theirs,
        }
        for metric in ("pp_tps", "tg_tps"):
            diff = rel_diff(ours[metric], theirs[metric] if theirs else None)
            entry[f"{metric}_rel_diff"] = diff
            entry[f"{metric}_within_5pct"] = within(diff)
            entry[f"{metric}_ours_vs_truth"] = rel_diff(ours[metric], entry["truth"][metric])
            if theirs:
                entry[f"{metric}_llama_benchy_vs_truth"] = rel_diff(theirs[metric], entry["truth"][metric])
        out.append(entry)
    part["cells"] = out
    part["ours_runs"] = [{f"pp{k[0]}/tg{k[1]}@d{k[2]}": v for k, v in run.items()} for run in ours_runs]
    return part


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"machine_at_start": machine(), "goal_rel_diff": GOAL}
    if "latency" not in args.parts_skip:
        result["latency"] = latency_part(args, folder)
    if "depth" not in args.parts_skip:
        result["depth"] = depth_part(args)
    verdicts = [
        v
        for part in (
            result.get("latency", {}).get("levels", {}).values(),
            result.get("depth", {}).get("cells", []),
        )
        for entry in part
        for k, v in entry.items()
        if k.endswith("_within_5pct") and v is not None
    ]
    result["all_within_5pct"] = all(verdicts) if verdicts else None
    result["machine_at_end"] = machine()
    return result


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_dir_argument(parser)
    parser.add_argument("--skip", nargs="*", default=[], choices=["aiperf", "llama-benchy"])
    parser.add_argument("--parts-skip", nargs="*", default=[], choices=["latency", "depth"])
    parser.add_argument("--repeats", type=int, default=2, help="rounds, the order alternating")
    latency = parser.add_argument_group("latency (ours vs AIPerf)")
    latency.add_argument("--concurrency", default="1,8,32", help="comma-separated")
    latency.add_argument("--ttft-ms", type=float, default=50.0)
    latency.add_argument("--tokens-per-s", type=float, default=100.0)
    latency.add_argument("--isl", type=int, default=64)
    latency.add_argument("--osl", type=int, default=64)
    latency.add_argument("--requests-per-stream", type=int, default=2)
    latency.add_argument("--min-requests", type=int, default=12)
    depth = parser.add_argument_group("depth (ours vs llama-benchy)")
    depth.add_argument("--pp", type=ints, default=[512])
    depth.add_argument("--tg", type=ints, default=[32])
    depth.add_argument("--depths", type=ints, default=[0, 1024, 4096])
    depth.add_argument("--runs", type=int, default=3)
    depth.add_argument("--prefill-tokens-per-s", type=float, default=2000.0)
    depth.add_argument("--depth-tokens-per-s", type=float, default=50.0)
    depth.add_argument("--decode-slowdown-per-1k", type=float, default=0.1)
    run_and_print(parser.parse_args(argv), run, prefix="perf-agreement-")


if __name__ == "__main__":
    main()
