"""What the gateway (/v1 on the app's port) adds over asking the model's server directly.

    .venv/bin/python -m perf.gateway_overhead                      # ~3-4 min on 2 cores
    .venv/bin/python -m perf.gateway_overhead --repeats 2 --concurrency 1,16

Prints one JSON document (progress goes to stderr). The stand is the real thing: ``streamlit
run app.py`` on its own catalog, database and port (``tests.e2e.app_process``), with one
simulator in its catalog as a model of runtime ``process`` (``tests.catalogs.sim_process``), so
the app starts it; it is loaded once (``POST /api/models/{id}/load?wait=true``) before anything
is measured. Our own benchmark engine (``run_sweep``, figures by ``benchmark.metrics``) sends the
same closed-loop workload at each concurrency twice, side by side:

- ``direct``: Target = the simulator's own URL;
- ``gateway``: Target = the app's port, model = the catalog id (the gateway rewrites it).

Each repeat runs both modes back to back at every level, the order alternating between repeats
(A/B, then B/A), so machine noise falls on both alike. Goals (issue 13, "Performance"), per level:

- ``added_ttft_p50_ms`` <= 2: gateway TTFT p50 minus direct TTFT p50, per repeat, then the
  median over repeats (paired: each pair ran seconds apart);
- ``throughput_ratio`` >= 0.95: gateway / direct output tokens/s over the level window;
- ``coalesced_chunks`` = 0 through the gateway: token frames that arrived in the same network
  read as the token frame before them (the transport stamps every frame of one read with that
  read's time, so a gap of exactly 0 is a shared read), or within ``--coalesced-within-ms`` of it,
  while the simulator paced them one ITL apart. The direct figure is shown next to it: what the
  simulator and our client coalesce on their own, which the gateway cannot be blamed for.

Besides: ITL p50 both ways; time to the response headers (the gateway's request path without
the model's TTFT in it); ``gateway_cpu_us_per_frame``, the app's CPU per relayed SSE frame less
what it spends idle (its share during the direct run), and the frames/s one core could relay at
that price, the gateway's own ceiling whatever the machine; and ``runner``, our client's health
per level: loop lag p99 and CPU share per mode, runs over ``benchmark.metrics``' limits, and
whether it was ``saturated`` (over the limits with most of a core busy: the client set the pace)
or the machine was busy with other work (over the limits with CPU to spare). Coalescing is judged
only on gateway runs in which our client never stalled for an ITL (``stalls``: a client held up
that long bunches its own reads), so every coalesced frame there was bunched before it reached
the client; direct runs without a stall show the simulator's own share.

The workload: the simulator's TTFT 100 ms and 50 tokens/s per stream (20 ms ITL) alone, and a
batch of up to 64 sequences that stretches the ITL by 1 + S (n - 1) (``--batch-slowdown``, 0.03:
2.9x at 64, ~1,100 tokens/s in all, as a big model on one GPU box decodes 64 streams). Without
the stretch, 64 streams at 50 tokens/s are 3,200 frames/s, and runner, app and simulator (each
~60-250 us CPU per frame here; the gateway's httpx relay ~500-850) oversubscribe 2 shared cores:
measured here, the runner's lag p99 went to 15-150 ms and the figures were the machine's.
On 2 shared cores the figures are only as good as ``machine_at_start`` / ``machine_at_end`` say.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psutil

from benchmark.loop_health import TICK_S
from benchmark.metrics import LAG_P99_LIMIT_MS, level_summary, measured, runner_health
from benchmark.records import RequestRecord
from benchmark.runner import run_blocking, run_sweep
from benchmark.stats import percentile
from benchmark.transport import Target
from benchmark.workload import LengthSpec, SweepWorkload
from perf.bench_support import SimFarm, machine, median
from perf.benchmark_capacity import ratio, summarise
from perf.common import add_dir_argument, log, run_and_print
from settings import Settings
from tests.catalogs import sim_process
from tests.e2e.app_process import RunningApp, app_files, start_app
from tests.support import free_port

MODEL_ID: Final = "gw-overhead"
ENGINE: Final = "llamacpp"  # the dialect tests.catalogs.sim_process runs the simulator in
MODES: Final = ("direct", "gateway")
ADDED_TTFT_GOAL_MS: Final = 2.0
THROUGHPUT_GOAL: Final = 0.95
# The runner's CPU share at which it is taken to be the limit: near one core its reads bunch up
# before its loop lag shows it (benchmark.loop_health.CpuShare).
RUNNER_BUSY_SHARE: Final = 0.8


# --- pure helpers (tests/unit/test_perf_gateway_overhead.py) -------------------------------------


def coalesced(arrivals_ns: Sequence[int], within_ns: int) -> int:
    """Arrivals less than ``within_ns`` after the one before; 1 ns counts shared reads only."""
    return sum(1 for a, b in itertools.pairwise(arrivals_ns) if b - a < within_ns)


def frames_per_read(records: Sequence[RequestRecord]) -> float | None:
    """SSE frames per network read: every frame of one read carries that read's timestamp."""
    frames = sum(len(r.frame_ns) for r in records)
    reads = sum(len(set(r.frame_ns)) for r in records)
    return round(frames / reads, 3) if reads else None


def stalls(lag_ms: Sequence[float], itl_ms: float) -> int:
    """Loop-lag samples long enough for two frames one ITL apart to wait for the same read.

    A tick sleeps ``TICK_S`` and reports how late it woke: a loop held up for B ms wakes it up
    to B late, and only a hold-up of an ITL or more leaves two paced frames for one read.
    """
    return sum(1 for lag in lag_ms if lag >= itl_ms - TICK_S * 1000)


Run = dict[str, Any]  # one run's figures, as one_run returns them
Pair = Callable[[Run, Run], float | None]  # (direct, gateway) -> one paired figure


def paired(runs: dict[str, list[Run]], pair: Pair) -> tuple[float | None, list[float | None]]:
    """``pair`` of each repeat's direct and gateway runs (they ran back to back), and the median."""
    values = [pair(d, g) for d, g in zip(runs["direct"], runs["gateway"], strict=True)]
    return median(values), values


def diff(key: str) -> Pair:
    def pair(direct: Run, gateway: Run) -> float | None:
        a, b = direct.get(key), gateway.get(key)
        return None if a is None or b is None else round(b - a, 3)

    return pair


def gain(key: str) -> Pair:
    return lambda direct, gateway: ratio(gateway.get(key), direct.get(key))


def net_app_cpu_us_per_frame(direct: Run, gateway: Run) -> float | None:
    """The app's CPU per relayed frame, less what it spends anyway (its share while idle in the
    direct run: Streamlit, the reconciler's ticks, liveness probes)."""
    if not gateway["frames_all"]:
        return None
    net_s = gateway["app_cpu_s"] - direct["app_cpu_share"] * gateway["wall_s"]
    return round(net_s / gateway["frames_all"] * 1e6, 1)


# --- the stand: the app, and the simulator it started --------------------------------------------


@dataclass(frozen=True)
class Stand:
    app: RunningApp
    direct_url: str
    app_proc: psutil.Process
    sim: SimFarm  # the one simulator: its URL and process, for its CPU

    def target(self, mode: str) -> Target:
        if mode == "direct":
            return Target(self.direct_url, MODEL_ID, engine=ENGINE)
        # The catalog id, as a user of /v1 names the model; the gateway sends the served name on.
        return Target(self.app.base_url, MODEL_ID, model_id=MODEL_ID, engine=ENGINE)

    def app_cpu_s(self) -> float:
        return sum(self.app_proc.cpu_times()[:2])


def sim_args(args: argparse.Namespace) -> list[str]:
    # Given after sim_process's own --ttft-ms/--tokens-per-s, so these win (argparse: last one).
    return [
        *("--ttft-ms", f"{args.ttft_ms:g}", "--tokens-per-s", f"{args.tokens_per_s:g}"),
        *("--max-batch", str(args.max_batch), "--batch-slowdown", f"{args.batch_slowdown:g}"),
    ]


@contextmanager
def stand(args: argparse.Namespace, folder: Path) -> Iterator[Stand]:
    """The app on a catalog of one simulated model, that model loaded; all of it gone on exit."""
    entry = sim_process(MODEL_ID, free_port(), *sim_args(args))
    with app_files(folder, entry) as files:
        # The e2e tests tick the reconciler fast to finish sooner; a user's app ticks at the
        # defaults, and the reconciler's work shares the gateway's process.
        defaults = Settings.model_fields
        ticks = {
            "DXG_TICK_S": str(defaults["tick_s"].default),
            "DXG_FAST_TICK_S": str(defaults["fast_tick_s"].default),
        }
        log(f"starting the app on port {files.port} (catalog {files.catalog})")
        app = start_app(files, **ticks)
        try:
            status = app.load(MODEL_ID)
            servers = files.server_processes()
            if len(servers) != 1:
                raise RuntimeError(f"expected one simulator process, found {len(servers)}")
            url = str(status["url"]).rstrip("/")
            log(f"loaded {MODEL_ID}: simulator at {url} (pid {servers[0].pid}), app pid {app.proc.pid}")
            yield Stand(app, url, psutil.Process(app.proc.pid), SimFarm(url, servers))
        finally:
            app.unload_all()
            app.signal(signal.SIGTERM, 30)


# --- one run: one mode at one concurrency --------------------------------------------------------


def one_run(
    stand: Stand, mode: str, concurrency: int, requests: int, args: argparse.Namespace
) -> dict[str, Any]:
    workload = SweepWorkload(
        concurrency=[concurrency],
        requests_per_level=requests,
        input_tokens=LengthSpec(mean=args.isl),
        output_tokens=LengthSpec(mean=args.osl),
    )
    app0, sim0, t0 = stand.app_cpu_s(), stand.sim.cpu_s(), time.perf_counter()
    outcome = run_blocking(run_sweep(stand.target(mode), workload))
    wall = time.perf_counter() - t0
    app_cpu, sim_cpu = stand.app_cpu_s() - app0, stand.sim.cpu_s() - sim0
    level = [r for r in outcome.records if r.level == 0]
    health = outcome.health[0] if outcome.health else {"lag_ms": [], "slip_ms": [], "cpu_share": []}
    verdict = runner_health(health["lag_ms"], health["slip_ms"])
    itl_ms = 1000 / args.tokens_per_s * batch_stretch(concurrency, args)
    summary = level_summary(level, health=verdict)
    ok = [r for r in measured(level) if r.ok]
    # Every frame of the call, probes and warm-ups too: they cost the app and the simulator CPU.
    every_frame = sum(len(r.frame_ns) for r in outcome.records)
    within_ns = int(args.coalesced_within_ms * 1e6)
    tokens = [r.token_frames() for r in ok]
    headers = [r.headers_ns / 1e6 for r in ok if r.headers_ns is not None]
    result = {
        "completed": summary["completed"],
        "errors": summary["errors"],
        "error_classes": summary["error_classes"],
        "ttft_p50_ms": rounded(summary["ttft_ms"]["p50"]),
        "ttft_p90_ms": rounded(summary["ttft_ms"]["p90"]),
        "headers_p50_ms": rounded(percentile(headers, 50.0)),
        "itl_p50_ms": rounded(summary["itl_ms"]["p50"]),
        "itl_p99_ms": rounded(summary["itl_ms"]["p99"]),
        "output_tokens_per_s": rounded(summary["output_tokens_per_s"]),
        "output_length_honoured": summary["output_length_honoured"]["fraction"],
        "token_frames": sum(len(t) for t in tokens),
        "coalesced_same_read": sum(coalesced(t, 1) for t in tokens),
        "coalesced_within": sum(coalesced(t, within_ns) for t in tokens),
        "frames_per_read": frames_per_read(ok),
        "lag_p99_ms": rounded(verdict["lag_p99_ms"]),
        "slip_p99_ms": rounded(verdict["slip_p99_ms"]),
        "runner_cpu_share": median(health.get("cpu_share") or []),
        "client_stalls": stalls(health["lag_ms"], itl_ms),
        "runner_valid": verdict["valid"],
        "runner_reason": verdict["reason"],
        "frames_all": every_frame,
        "app_cpu_s": round(app_cpu, 3),
        "app_cpu_share": round(app_cpu / wall, 4),
        "app_cpu_us_per_frame": round(app_cpu / every_frame * 1e6, 1) if every_frame else None,
        "sim_cpu_us_per_frame": round(sim_cpu / every_frame * 1e6, 1) if every_frame else None,
        "wall_s": round(wall, 2),
    }
    log(
        f"  {mode:<7s} c={concurrency:<3d} ttft p50 {result['ttft_p50_ms']} ms, "
        f"itl p50 {result['itl_p50_ms']} ms, "
        f"{result['output_tokens_per_s']} tok/s, coalesced {result['coalesced_same_read']}, "
        f"lag p99 {result['lag_p99_ms']} ms, app {result['app_cpu_us_per_frame']} us/frame"
    )
    return result


def rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def coalesced_verdict(runs: dict[str, list[Run]]) -> dict[str, Any]:
    """Token frames that shared a read, per mode and repeat; the goal judged on the gateway runs
    whose client never stalled for an ITL (``client_stalls``), so that every coalesced frame
    there was bunched before it reached our client: by the gateway, or by the simulator, whose
    share the direct runs with no stall show."""

    def clean(mode: str) -> list[Run]:
        return [r for r in runs[mode] if r["client_stalls"] == 0]

    judged = {mode: clean(mode) for mode in MODES}
    counts = {mode: sum(r["coalesced_same_read"] for r in judged[mode]) for mode in MODES}
    return {
        **{
            f"{mode}_{kind}": sum(r[f"coalesced_{kind}"] for r in runs[mode])
            for mode in MODES
            for kind in ("same_read", "within")
        },
        "per_repeat": [
            [d["coalesced_same_read"], g["coalesced_same_read"]]
            for d, g in zip(runs["direct"], runs["gateway"], strict=True)
        ],
        "token_frames_per_mode": sum(r["token_frames"] for r in runs["gateway"]),
        "runs_without_client_stall": {mode: len(judged[mode]) for mode in MODES},
        **{f"{mode}_without_client_stall": counts[mode] if judged[mode] else None for mode in MODES},
        "goal": "0 through the gateway",
        "met": counts["gateway"] == 0 if judged["gateway"] else None,
    }


def runner_verdict(runs: dict[str, list[Run]]) -> dict[str, Any]:
    """Was our client the limit? Over the lag limit with most of a core busy: saturated; over it
    with CPU to spare: the machine's other work took the cores (shared 2-core hosts do)."""
    bad = [r for mode in MODES for r in runs[mode] if not r["runner_valid"]]
    busy = [r for mode in MODES for r in runs[mode] if (r["runner_cpu_share"] or 0) >= RUNNER_BUSY_SHARE]
    return {
        "lag_p99_ms": {mode: median([r["lag_p99_ms"] for r in runs[mode]]) for mode in MODES},
        "stalls_over_an_itl": {mode: sum(r["client_stalls"] for r in runs[mode]) for mode in MODES},
        "cpu_share": {mode: median([r["runner_cpu_share"] for r in runs[mode]]) for mode in MODES},
        "invalid_runs": {mode: sum(1 for r in runs[mode] if not r["runner_valid"]) for mode in MODES},
        "why": sorted({r["runner_reason"] for r in bad}) or None,
        "saturated": bool(busy),
        "machine_busy": bool(bad) and not busy,
    }


# --- the conductor -------------------------------------------------------------------------------


def conclude(levels: list[int], raw: dict[tuple[str, int], list[dict[str, Any]]]) -> dict[str, Any]:
    per_level: dict[str, Any] = {}
    for c in levels:
        runs = {mode: raw[(mode, c)] for mode in MODES}
        direct, gateway = summarise(runs["direct"]), summarise(runs["gateway"])
        added, added_runs = paired(runs, diff("ttft_p50_ms"))
        headers, headers_runs = paired(runs, diff("headers_p50_ms"))
        tput, tput_runs = paired(runs, gain("output_tokens_per_s"))
        cpu, cpu_runs = paired(runs, net_app_cpu_us_per_frame)
        coalescing = coalesced_verdict(runs)
        runner = runner_verdict(runs)
        per_level[str(c)] = {
            "ttft_p50_ms": {"direct": direct["ttft_p50_ms"], "gateway": gateway["ttft_p50_ms"]},
            "added_ttft_p50_ms": {
                "value": added,
                "per_repeat": added_runs,
                "goal": f"<= {ADDED_TTFT_GOAL_MS:g}",
                "met": None if added is None else added <= ADDED_TTFT_GOAL_MS,
            },
            "added_headers_p50_ms": {"value": headers, "per_repeat": headers_runs},
            "throughput_ratio": {
                "value": tput,
                "per_repeat": tput_runs,
                "output_tokens_per_s": {
                    "direct": direct["output_tokens_per_s"],
                    "gateway": gateway["output_tokens_per_s"],
                },
                "goal": f">= {THROUGHPUT_GOAL:g}",
                "met": None if tput is None else tput >= THROUGHPUT_GOAL,
            },
            "itl_p50_ms": {"direct": direct["itl_p50_ms"], "gateway": gateway["itl_p50_ms"]},
            "coalesced_chunks": coalescing,
            "runner": runner,
            # What one core could relay at that price: the gateway's own ceiling on any machine.
            "gateway_cpu_us_per_frame": {
                "value": cpu,
                "per_repeat": cpu_runs,
                "projected_frames_per_s_one_core": round(1e6 / cpu) if cpu else None,
            },
            "direct": direct,
            "gateway": gateway,
        }
    verdicts = [
        entry[goal]["met"]
        for entry in per_level.values()
        for goal in ("added_ttft_p50_ms", "throughput_ratio", "coalesced_chunks")
    ]
    return {
        "all_goals_met": all(v is True for v in verdicts),
        "client_kept_up": not any(entry["runner"]["saturated"] for entry in per_level.values()),
        "runs_over_runner_limits": sum(sum(e["runner"]["invalid_runs"].values()) for e in per_level.values()),
        "levels": per_level,
    }


def batch_stretch(concurrency: int, args: argparse.Namespace) -> float:
    """How much the simulator stretches the ITL with ``concurrency`` streams in its batch."""
    return 1 + args.batch_slowdown * (min(concurrency, args.max_batch or concurrency) - 1)


def requests_at(c: int, args: argparse.Namespace) -> int:
    return max(args.min_requests, args.requests_per_stream * c)


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    levels = [int(c) for c in args.concurrency.split(",")]
    result: dict[str, Any] = {
        "machine_at_start": machine(),
        "settings": {
            "concurrency": levels,
            "requests_per_level": {str(c): requests_at(c, args) for c in levels},
            "repeats": args.repeats,
            "isl": args.isl,
            "osl": args.osl,
            "coalesced_within_ms": args.coalesced_within_ms,
            "lag_limit_ms": LAG_P99_LIMIT_MS,
            "simulator": {
                "engine": ENGINE,
                "ttft_ms": args.ttft_ms,
                "tokens_per_s": args.tokens_per_s,
                "itl_ms": round(1000 / args.tokens_per_s, 3),
                "max_batch": args.max_batch,
                "batch_slowdown": args.batch_slowdown,
                "itl_ms_at": {
                    str(c): round(1000 / args.tokens_per_s * batch_stretch(c, args), 3) for c in levels
                },
                "runtime": "process (started by the app from its catalog)",
            },
            "app": "streamlit run app.py (tests.e2e.app_process.start_app), reconciler ticks at defaults",
        },
    }
    raw: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with stand(args, folder) as bench:
        for repeat in range(args.repeats):
            for index, c in enumerate(levels):
                order = MODES if (repeat + index) % 2 == 0 else MODES[::-1]
                what = f"c={c} ({requests_at(c, args)} requests)"
                log(f"repeat {repeat + 1}/{args.repeats} {what}: {', '.join(order)}")
                for mode in order:
                    raw.setdefault((mode, c), []).append(one_run(bench, mode, c, requests_at(c, args), args))
    return {**result, **conclude(levels, raw), "machine_at_end": machine()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_dir_argument(parser)
    parser.add_argument("--concurrency", default="1,64", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=4, help="A/B pairs per level, the order alternating")
    parser.add_argument("--requests-per-stream", type=int, default=3, help="requests per level = this x c")
    parser.add_argument("--min-requests", type=int, default=20, help="at least this many per level")
    parser.add_argument("--isl", type=int, default=128)
    parser.add_argument("--osl", type=int, default=32)
    parser.add_argument("--ttft-ms", type=float, default=100.0, help="the simulator's TTFT")
    parser.add_argument("--tokens-per-s", type=float, default=50.0, help="per stream: ITL = 1000 / this ms")
    parser.add_argument("--max-batch", type=int, default=64, help="the simulator's decode batch")
    parser.add_argument(
        "--batch-slowdown",
        type=float,
        default=0.03,
        help="the simulator's S: a batch of n stretches the ITL by 1 + S(n - 1) (64 streams: 2.9x)",
    )
    parser.add_argument("--coalesced-within-ms", type=float, default=0.2)
    run_and_print(parser.parse_args(argv), run, prefix="perf-gateway-")


if __name__ == "__main__":
    main()
