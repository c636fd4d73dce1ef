"""Event store benchmark: append throughput, and model-state read latency as history grows.

    .venv/bin/python -m perf.event_store                      # full run, a few minutes
    .venv/bin/python -m perf.event_store --sizes 1000,20000   # quick check

Prints one JSON document to stdout (progress goes to stderr). The read figures
go through the real ``EventStore.model_states()``; only the seeding of large
histories bypasses ``append`` (a bulk insert followed by ``rebuild_projection``),
because a million fsync'd appends would take far longer than the reads we measure.
The goal is ``model_states_ratio`` (median at the largest size over the smallest) <= 1.5.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from db.migrate import upgrade_to_head
from db.session import make_engine
from db.store import EventStore
from db.tables import EventRow
from lifecycle.core.events import (
    Crashed,
    Event,
    LoadRequested,
    ReadyObserved,
    RestartScheduled,
    StartIssued,
    StopIssued,
    Stopped,
    UnloadRequested,
    model_stream,
    to_record,
)
from perf.common import add_dir_argument, log, run_and_print, summary_ms, timed

# One model's typical life, repeated to make up any history size.
LIFECYCLE: list[Event] = [
    LoadRequested(),
    StartIssued(handle={"kind": "docker", "container": "dxg-i1234-llama", "port": 8000}),
    ReadyObserved(load_duration_s=71.4),
    Crashed(exit_code=137, oom=True, log_tail="torch.OutOfMemoryError: CUDA out of memory\n" * 5),
    RestartScheduled(delay_s=2.0, attempt=1, at=1_800_000_000.0),
    StartIssued(handle={"kind": "docker", "container": "dxg-i1234-llama", "port": 8000}, attempt=2),
    ReadyObserved(load_duration_s=65.0),
    UnloadRequested(reason="user"),
    StopIssued(reason="unload"),
    Stopped(reason="unload", exit_code=0),
]
_RECORDS = [to_record(e) for e in LIFECYCLE]
_SEED_CHUNK = 50_000


def fresh_store(folder: Path, name: str) -> tuple[Engine, EventStore]:
    db_url = f"sqlite:///{folder / name}.db"
    upgrade_to_head(db_url)
    engine = make_engine(db_url)
    return engine, EventStore(engine)


def bench_appends(folder: Path, events: int, batch: int) -> dict[str, Any]:
    """One writer that knows its stream's version, ``batch`` events per transaction."""
    engine, store = fresh_store(folder, f"append-{batch}")
    try:
        stream = model_stream("bench")
        version = 0
        start = time.perf_counter()
        while version < events:
            chunk = [LIFECYCLE[(version + i) % len(LIFECYCLE)] for i in range(min(batch, events - version))]
            version = store.append(stream, chunk, version, "bench")[-1].version
        elapsed = time.perf_counter() - start
    finally:
        engine.dispose()
    return {
        "events": events,
        "events_per_append": batch,
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed, 1),
        "appends_per_s": round(events / batch / elapsed, 1),
    }


def seed_rows(total: int, models: int) -> Iterator[dict[str, Any]]:
    """``total`` events spread round-robin over ``models`` streams, versions 1.. per stream."""
    streams = [model_stream(f"model-{m:03d}") for m in range(models)]
    t0 = 1_700_000_000.0
    for n in range(total):
        version = n // models + 1
        type_name, payload = _RECORDS[(version - 1) % len(_RECORDS)]
        yield {
            "stream": streams[n % models],
            "version": version,
            "type": type_name,
            "payload": payload,
            "actor": "bench",
            "ts": t0 + n * 0.001,
        }


def seed(engine: Engine, total: int, models: int) -> None:
    rows = seed_rows(total, models)
    with engine.begin() as conn:
        while chunk := [row for _, row in zip(range(_SEED_CHUNK), rows, strict=False)]:
            conn.execute(insert(EventRow), chunk)


def bench_reads(folder: Path, total: int, models: int, reads: int) -> dict[str, Any]:
    engine, store = fresh_store(folder, f"read-{total}")
    try:
        start = time.perf_counter()
        seed(engine, total, models)
        seeded = time.perf_counter()
        rebuilt_rows = store.rebuild_projection()
        rebuilt = time.perf_counter()
        if rebuilt_rows != min(models, total) or len(store.model_states()) != rebuilt_rows:
            raise RuntimeError(f"projection has {rebuilt_rows} rows for {models} models")
        log(f"  {total} events: seeded in {seeded - start:.1f}s, rebuilt in {rebuilt - seeded:.1f}s")
        timed(store.model_states, 20)  # warm the page cache and the connection pool
        states = summary_ms(timed(store.model_states, reads))
        one = summary_ms(timed(lambda: store.model_state("model-000"), reads))
        db_bytes = sum(p.stat().st_size for p in folder.glob(f"read-{total}.db*"))
    finally:
        engine.dispose()
    return {
        "events": total,
        "models": models,
        "db_mb": round(db_bytes / 1e6, 1),
        "seed_s": round(seeded - start, 2),
        "rebuild_projection_s": round(rebuilt - seeded, 2),
        "model_states": states,
        "model_state_one": one,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,100000,1000000", help="event counts, comma-separated")
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--reads", type=int, default=300, help="timed reads per size")
    parser.add_argument("--appends", type=int, default=2000, help="events per append benchmark")
    parser.add_argument("--batch", type=int, default=100, help="events per append in the batched run")
    add_dir_argument(parser)
    return parser.parse_args(argv)


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    log(f"appends: {args.appends} events, single and in batches of {args.batch}")
    appends = [bench_appends(folder, args.appends, 1), bench_appends(folder, args.appends, args.batch)]
    log(f"model_states() with {args.models} models at {sizes} events")
    reads = [bench_reads(folder, size, args.models, args.reads) for size in sizes]
    smallest, largest = reads[0]["model_states"]["median_ms"], reads[-1]["model_states"]["median_ms"]
    ratio = round(largest / smallest, 3)
    return {
        "sqlite_settings": "WAL, synchronous=FULL, BEGIN IMMEDIATE",
        "append": appends,
        "model_states_reads": reads,
        "model_states_ratio": {
            "largest_over_smallest": ratio,
            "sizes": [sizes[0], sizes[-1]],
            "goal": 1.5,
            "met": ratio <= 1.5,
        },
    }


def main(argv: list[str] | None = None) -> None:
    run_and_print(parse_args(argv), run, "dxg-store-bench-")


if __name__ == "__main__":
    main()
