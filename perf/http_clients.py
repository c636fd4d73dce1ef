"""Which HTTP client should the load generator use: httpx or aiohttp, on asyncio or uvloop?

    .venv/bin/python -m perf.http_clients                      # saturating, ~4 min on 2 cores
    .venv/bin/python -m perf.http_clients --tokens-per-s 50    # paced: every client keeps up
    .venv/bin/python -m perf.http_clients --concurrency 64 --repeats 3 --sims 1,2

Prints one JSON document to stdout (progress goes to stderr). Each run is a fresh child process
(one client, one session or client object with a pool as large as the concurrency, one event
loop) that keeps ``C`` chat streams open against the simulator (closed loop: a stream that ends
starts the next), for a warm-up and then a measured window. Per run it reports:

- ``chunks_per_s``: SSE ``data:`` events received per second in the window;
- ``cpu_us_per_chunk``: the client process's CPU time in the window per chunk: the fair figure
  when the simulator, not the client, caps ``chunks_per_s`` (on 2 cores it does, near 20k/s);
- ``loop_lag_p50_ms`` / ``loop_lag_p99_ms``: how late a task sleeping 1 ms in a loop wakes,
  i.e. how long the client's event loop is busy between two looks at its timers;
- ``chunks_per_read``: SSE events per read handed to the client code (they share one
  timestamp). httpx hands over one h11 body event per HTTP chunk, so it reads ~1 even when
  one recv() held many; aiohttp's ``iter_any`` hands over all that is buffered;
- ``sim_cpu_us_per_chunk``: the simulators' CPU per chunk, to show who is the bottleneck.

Every read is timestamped with ``perf_counter_ns`` before it is parsed, and parsed the way a
load generator must (split SSE events, ``json.loads`` each, count content deltas), so the
figures include the work the benchmark will really do. Clients are interleaved (the order
rotates each repeat) and the summary takes medians over repeats. The figures are only as good
as the CPU the machine had to spare: the load average is in the output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from perf.common import log
from simulator.process import SimulatorProcess

CLIENTS = ("httpx-asyncio", "aiohttp-asyncio", "aiohttp-uvloop", "httpx-uvloop")
MODEL = "m"
LAG_SLEEP_S = 0.001
# Called with each network read (already timestamped) of one reply.
OnData = Callable[[int, bytes], None]
StreamOne = Callable[[str, dict[str, Any], OnData], Awaitable[None]]


# --- the worker: one client, one loop, one process --------------------------------------------


@dataclass
class Tally:
    """What all streams of one run received; ``window`` marks the measured stretch."""

    window: bool = False
    chunks: int = 0  # SSE data events in the window, [DONE] excluded
    tokens: int = 0  # of those, the ones carrying content
    reads: int = 0  # network reads (httpx: h11 body events) in the window
    all_chunks: int = 0  # over the whole run, warm-up and drain too (for the simulator's share)
    replies: int = 0
    errors: int = 0


class SseCounter:
    """Splits one reply's bytes into SSE events and counts them, as a load generator would."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.buffer = b""
        self.arrivals: list[int] = []

    def feed(self, t_ns: int, data: bytes) -> None:
        tally, counted = self.tally, self.tally.window  # a read counts if it came in the window
        self.arrivals.append(t_ns)
        tally.reads += counted
        self.buffer += data
        while (end := self.buffer.find(b"\n\n")) >= 0:
            event, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            if not event.startswith(b"data: ") or event == b"data: [DONE]":
                continue
            tally.all_chunks += 1
            choices = json.loads(event[6:]).get("choices") or [{}]
            if counted:
                tally.chunks += 1
                tally.tokens += bool(choices[0].get("delta", {}).get("content"))


async def lag_probe(lags_ns: list[int], stop: asyncio.Event) -> None:
    """Oversleep of a 1 ms sleep: what a timer (a request's send time, say) suffers."""
    while not stop.is_set():
        start = time.perf_counter_ns()
        await asyncio.sleep(LAG_SLEEP_S)
        lags_ns.append(time.perf_counter_ns() - start - int(LAG_SLEEP_S * 1e9))


@contextmanager
def httpx_streamer(concurrency: int) -> Iterator[tuple[StreamOne, Callable[[], Awaitable[None]]]]:
    import httpx

    # Room for every stream: a pool smaller than the concurrency would queue requests silently.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0))

    async def stream_one(url: str, body: dict[str, Any], on_data: OnData) -> None:
        async with client.stream("POST", url, json=body) as response:
            response.raise_for_status()
            async for data in response.aiter_raw():  # raw: no decoding layer between wire and clock
                on_data(time.perf_counter_ns(), data)

    yield stream_one, client.aclose


@contextmanager
def aiohttp_streamer(concurrency: int) -> Iterator[tuple[StreamOne, Callable[[], Awaitable[None]]]]:
    import aiohttp

    holder: dict[str, aiohttp.ClientSession] = {}

    def session() -> aiohttp.ClientSession:
        # A ClientSession must be made inside the running loop, so on first use.
        if "s" not in holder:
            connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
            timeout = aiohttp.ClientTimeout(total=None, sock_read=60.0)
            holder["s"] = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return holder["s"]

    async def stream_one(url: str, body: dict[str, Any], on_data: OnData) -> None:
        async with session().post(url, json=body) as response:
            response.raise_for_status()
            async for data in response.content.iter_any():  # whatever arrived, no line buffering
                on_data(time.perf_counter_ns(), data)

    async def close() -> None:
        if "s" in holder:
            await holder["s"].close()

    yield stream_one, close


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    library = args.client.split("-")[0]
    streamer = httpx_streamer if library == "httpx" else aiohttp_streamer
    urls = [f"{base}/v1/chat/completions" for base in args.urls.split(",")]
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "count"}],
        "max_tokens": args.max_tokens,
        "stream": True,
    }
    tally = Tally()
    lags_ns: list[int] = []
    stop_lag = asyncio.Event()

    with streamer(args.concurrency) as (stream_one, close):

        async def stream_loop(k: int) -> None:
            url = urls[k % len(urls)]  # several simulators share the streams evenly
            # Spread the first requests over one token interval, so that slow streams do not
            # all tick in the same millisecond (a burst no real load has).
            await asyncio.sleep(k * args.stagger_s / max(args.concurrency, 1))
            while True:
                try:
                    await stream_one(url, body, SseCounter(tally).feed)
                except Exception as exc:  # both libraries' errors: counted and shown, never fatal
                    tally.errors += 1
                    log(f"{args.client}: {exc!r}")
                tally.replies += tally.window

        streams = [asyncio.create_task(stream_loop(k)) for k in range(args.concurrency)]
        await asyncio.sleep(args.warmup_s)
        tally.window = True
        probe = asyncio.create_task(lag_probe(lags_ns, stop_lag))
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(args.window_s)
        cpu1, t1 = time.process_time(), time.perf_counter()
        tally.window = False
        stop_lag.set()
        await probe
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        await close()

    lag_ms = sorted(x / 1e6 for x in lags_ns)
    seconds, cpu, chunks, reads = t1 - t0, cpu1 - cpu0, tally.chunks, tally.reads
    return {
        **asdict(tally),
        "window_s": round(seconds, 3),
        "chunks_per_s": round(chunks / seconds, 1),
        "tokens_per_s": round(tally.tokens / seconds, 1),
        "cpu_s": round(cpu, 3),
        "cpu_share": round(cpu / seconds, 3),
        "cpu_us_per_chunk": round(cpu / chunks * 1e6, 2) if chunks else None,
        # Above 1, SSE events share a network read and so a timestamp: a client that reads
        # late batches more, which makes its chunks cheaper and its timings coarser.
        "chunks_per_read": round(chunks / reads, 3) if reads else None,
        "loop_lag_p50_ms": round(statistics.median(lag_ms), 3),
        "loop_lag_p99_ms": round(statistics.quantiles(lag_ms, n=100)[98], 3),
        "loop_lag_max_ms": round(lag_ms[-1], 3),
    }


def worker(args: argparse.Namespace) -> None:
    coroutine: Coroutine[Any, Any, dict[str, Any]] = drive(args)
    if args.client.endswith("uvloop"):
        import uvloop

        result = uvloop.run(coroutine)
    else:
        result = asyncio.run(coroutine)
    print(json.dumps(result))


# --- the conductor: simulators, interleaved runs, medians ---------------------------------------


@contextmanager
def simulators(count: int, tokens_per_s: float) -> Iterator[list[tuple[str, psutil.Process]]]:
    """``count`` simulators on OS-chosen ports: (base URL, process) each."""
    sim_args = ("--ttft-ms", "0", "--tokens-per-s", f"{tokens_per_s:g}")
    with ExitStack() as stack:
        found = []
        for _ in range(count):
            sim = stack.enter_context(SimulatorProcess("vllm", MODEL, 0, sim_args))
            port = sim.wait_event("listening").fields["port"]  # --port 0: the log names the port
            sim.wait_event("ready")
            found.append((f"http://127.0.0.1:{port}", psutil.Process(sim.proc.pid)))
        yield found


def cpu_seconds(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def one_run(
    client: str, concurrency: int, sims: list[tuple[str, psutil.Process]], args: argparse.Namespace
) -> Any:
    argv = [
        sys.executable,
        "-m",
        "perf.http_clients",
        "--worker",
        client,
        *("--urls", ",".join(url for url, _ in sims)),
        *("--concurrency", str(concurrency), "--max-tokens", str(args.max_tokens)),
        *("--warmup-s", str(args.warmup_s), "--window-s", str(args.window_s)),
        *("--stagger-s", str(1.0 / args.tokens_per_s)),
    ]
    procs = [p for _, p in sims]
    sim_cpu0 = cpu_seconds(procs)
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    sim_cpu = cpu_seconds(procs) - sim_cpu0
    if done.returncode != 0:
        raise RuntimeError(f"{client} c={concurrency} failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    # Over the worker's whole life (warm-up and drain too), so per chunk of that whole life.
    total = result["all_chunks"]
    result["sim_cpu_us_per_chunk"] = round(sim_cpu / total * 1e6, 2) if total else None
    if concurrency == 0:
        return result
    log(
        f"  {client:16s} c={concurrency:<4d} {result['chunks_per_s']:9.0f} chunks/s "
        f"cpu {result['cpu_us_per_chunk']} us/chunk ({result['cpu_share']:.2f} core) "
        f"{result['chunks_per_read']} chunks/read lag p99 {result['loop_lag_p99_ms']} ms "
        f"sim {result['sim_cpu_us_per_chunk']} us/chunk"
    )
    return result


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "chunks_per_s",
        "cpu_us_per_chunk",
        "cpu_s",
        "cpu_share",
        "chunks_per_read",
        "loop_lag_p50_ms",
        "loop_lag_p99_ms",
    )
    out: dict[str, Any] = {
        key: round(statistics.median(r[key] for r in runs if r[key] is not None), 3) for key in keys
    }
    out["sim_cpu_us_per_chunk"] = round(statistics.median(r["sim_cpu_us_per_chunk"] for r in runs), 2)
    out["errors"] = sum(r["errors"] for r in runs)
    out["runs"] = [{key: r[key] for key in (*keys, "errors")} for r in runs]
    return out


def conduct(args: argparse.Namespace) -> dict[str, Any]:
    clients = [c for c in args.clients.split(",") if c]
    levels = [int(c) for c in args.concurrency.split(",")]
    load_before = os.getloadavg()[0]
    setups: dict[str, Any] = {}
    with simulators(1, args.tokens_per_s) as sims:
        # The 1 ms probe alone, no streams: its own CPU share (part of every run's per-chunk
        # figure, which matters at low chunk rates) and the lag of an idle loop.
        idle = {loop: one_run(f"aiohttp-{loop}", 0, sims, args) for loop in ("asyncio", "uvloop")}
    baseline = {
        loop: {key: r[key] for key in ("cpu_share", "loop_lag_p50_ms", "loop_lag_p99_ms")}
        for loop, r in idle.items()
    }
    log(f"probe alone: {baseline}")
    for sim_count in (int(s) for s in args.sims.split(",")):
        with simulators(sim_count, args.tokens_per_s) as sims:
            raw: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for repeat in range(args.repeats):
                order = clients[repeat % len(clients) :] + clients[: repeat % len(clients)]
                log(f"sims={sim_count} repeat {repeat + 1}/{args.repeats}: {', '.join(order)}")
                for concurrency in levels:
                    for client in order:  # interleaved, the order rotating: no client always first
                        raw.setdefault((client, concurrency), []).append(
                            one_run(client, concurrency, sims, args)
                        )
            setups[f"sims={sim_count}"] = {
                str(c): {client: medians(raw[(client, c)]) for client in clients} for c in levels
            }
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1m_at_start": round(load_before, 2),
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "settings": {
            "tokens_per_s_per_stream": args.tokens_per_s,
            "max_tokens": args.max_tokens,
            "warmup_s": args.warmup_s,
            "window_s": args.window_s,
            "repeats": args.repeats,
        },
        "probe_only": baseline,
        "medians": setups,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated")
    parser.add_argument("--concurrency", default="16,64,128", help="comma-separated stream counts")
    parser.add_argument("--sims", default="1", help="comma-separated simulator counts, e.g. 1,2")
    parser.add_argument("--tokens-per-s", type=float, default=2000.0, help="per stream, simulator side")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--window-s", type=float, default=4.0)
    parser.add_argument("--stagger-s", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=CLIENTS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--urls", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        args.client, args.concurrency = args.worker, int(args.concurrency)
        worker(args)
        return
    print(json.dumps(conduct(args), indent=2))


if __name__ == "__main__":
    main()
