"""Benchmark runs on a real, migrated SQLite file: the life of a run, listing, crash recovery,
refused writes, and the JSON / CSV exports of what was stored."""

from __future__ import annotations

import copy
import csv
import io
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from benchmark.export import CSV_COLUMNS, run_to_csv, run_to_json
from benchmark.records import Channel, RequestRecord, RunRecord, RunStatus
from db.benchmark_store import INTERRUPTED, BenchmarkStore, BenchmarkStoreUnwritable, UnknownRun
from db.benchmark_tables import BenchmarkRequestRow
from lifecycle.core.errors import StoreUnwritable
from settings import Settings, sqlite_path

PROMPT_MARKER = "PROMPT-TEXT-THAT-MUST-NOT-BE-STORED"


@pytest.fixture
def store(engine: Engine) -> BenchmarkStore:
    return BenchmarkStore(engine)


def request(rng: random.Random, level: int, seq: int, *, warmup: bool = False) -> RequestRecord:
    """A finished streamed request with a reasoning phase and usage, as the runner fills one in."""
    frames = rng.randint(5, 60)
    at = rng.randint(20_000_000, 90_000_000)
    frame_ns = []
    for _ in range(frames):
        frame_ns.append(at)
        at += rng.randint(8_000_000, 30_000_000)
    channels = [Channel.NONE] + [Channel.REASONING] * 3 + [Channel.CONTENT] * (frames - 5) + [Channel.NONE]
    intended = seq * 50_000_000
    return RequestRecord(
        level=level,
        seq=seq,
        intended_ns=intended,
        sent_ns=intended + rng.randint(0, 200_000),
        warmup=warmup,
        requested_output_tokens=64,
        requested_prompt_tokens=256,
        headers_ns=frame_ns[0] - 1_000,
        frame_ns=frame_ns,
        frame_bytes=[rng.randint(90, 140) for _ in range(frames)],
        frame_channel=channels,
        end_ns=at,
        prompt_tokens=256,
        completion_tokens=frames - 2,
        reasoning_tokens=3,
        cached_tokens=rng.choice([None, 0, 128]),
        finish_reason="length",
        status=200,
        server_timings=rng.choice([None, {"prompt_ms": 12.5, "predicted_per_second": 41.0}]),
        text=PROMPT_MARKER,
    )


def failed_request(level: int, seq: int) -> RequestRecord:
    return RequestRecord(
        level=level,
        seq=seq,
        intended_ns=seq * 1000,
        sent_ns=seq * 1000 + 5,
        status=503,
        error_class="HTTP 503",
        error="the model server is up but not ready",
    )


def new_run(run_id: str = "a1b2c3d4", **changes: Any) -> RunRecord:
    values: dict[str, Any] = {
        "run_id": run_id,
        "kind": "sweep",
        "base_url": "http://127.0.0.1:8000/v1",
        "workload": {"levels": [1, 4], "seed": 7, "prompt": {"tokens": 256}},
        "started_at": 1_764_000_000.123456,
        "model_id": "llama-8b",
        "engine": "nim",
        "served_model": "meta/llama-3.1-8b-instruct",
        "catalog_entry": {"id": "llama-8b", "engine": "nim", "image": "nvcr.io/nim/meta/llama:1"},
        "server_meta": {"models": ["meta/llama-3.1-8b-instruct"], "version": "1.8.0"},
        "host": {"cpu": "Grace", "memory_gb": 128, "gpu": None},
    }
    values.update(changes)
    return RunRecord(**values)


def db_bytes(settings: Settings) -> bytes:
    path = sqlite_path(settings.db_url)
    assert path is not None
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


# --- a run's life ------------------------------------------------------------------------------


def test_a_run_stored_level_by_level_reads_back_as_it_was_put_in(
    store: BenchmarkStore, settings: Settings
) -> None:
    rng = random.Random(5)
    level0 = [request(rng, 0, 0, warmup=True), request(rng, 0, 1), failed_request(0, 2)]
    level1 = [request(rng, 1, seq) for seq in range(40)] + [failed_request(1, 40)]
    started = new_run()
    store.create(started)
    assert store.get("a1b2c3d4") == started  # status running, no requests yet

    store.add_requests("a1b2c3d4", level0)
    store.add_requests("a1b2c3d4", level1)
    health = [{"lag_p99_ms": 0.4, "slip_p99_ms": 0.2, "valid": True, "reason": None}] * 2
    results = {"levels": [{"ttft_ms": {"p50": 61.2}}, {"ttft_ms": {"p50": 75.0}}]}
    store.finish("a1b2c3d4", RunStatus.COMPLETE, 1_764_000_123.5, health=health, results=results)

    expected = copy.deepcopy(started)
    expected.status, expected.ended_at = RunStatus.COMPLETE, 1_764_000_123.5
    expected.health, expected.results = health, results
    expected.requests = level0 + level1
    stored = store.get("a1b2c3d4")
    assert stored is not None
    assert stored == expected
    # Every field of every request, frames to the nanosecond; the text is the one thing left out.
    assert [r.text for r in stored.requests] == [""] * len(expected.requests)
    assert stored.requests[0].warmup is True
    assert stored.requests[2].frame_ns == []
    assert PROMPT_MARKER.encode() not in db_bytes(settings)

    requests, chunks, blob_bytes = store.sizes("a1b2c3d4") or (0, 0, 0)
    assert requests == 44
    assert chunks == sum(len(r.frame_ns) for r in expected.requests)
    assert blob_bytes / chunks < 6  # streams of 5-60 frames: ~25 fixed bytes each weigh in

    without = store.get("a1b2c3d4", with_requests=False)
    assert without is not None
    assert without.requests == []
    assert without.results == results


def test_ordinals_continue_across_batches_and_a_run_can_be_created_with_requests(
    store: BenchmarkStore, engine: Engine
) -> None:
    rng = random.Random(9)
    imported = new_run("imported", status=RunStatus.PARTIAL, requests=[request(rng, 0, i) for i in range(3)])
    store.create(imported)
    store.add_requests("imported", [request(rng, 1, 0)])
    store.add_requests("imported", [])  # nothing to add is not an error
    with engine.connect() as conn:
        ordinals = conn.execute(
            select(BenchmarkRequestRow.ordinal)
            .where(BenchmarkRequestRow.run_id == "imported")
            .order_by(BenchmarkRequestRow.ordinal)
        ).scalars()
        assert list(ordinals) == [0, 1, 2, 3]
    stored = store.get("imported")
    assert stored is not None
    assert [(r.level, r.seq) for r in stored.requests] == [(0, 0), (0, 1), (0, 2), (1, 0)]


def test_unknown_runs_and_bad_input_are_refused_plainly(store: BenchmarkStore) -> None:
    assert store.get("nope") is None
    with pytest.raises(UnknownRun, match="no benchmark run 'nope'"):
        store.add_requests("nope", [failed_request(0, 0)])
    with pytest.raises(UnknownRun):
        store.finish("nope", RunStatus.FAILED, 1.0)
    with pytest.raises(ValueError, match="unknown run status 'done'"):
        store.create(new_run(status="done"))
    store.create(new_run("r1"))
    with pytest.raises(ValueError, match="unknown run status"):
        store.finish("r1", "done", 2.0)
    bad = failed_request(0, 0)
    bad.frame_ns, bad.frame_bytes, bad.frame_channel = [1, 2], [10], [0, 0]
    with pytest.raises(ValueError, match="one size and one channel per frame"):
        store.add_requests("r1", [failed_request(0, 1), bad])
    run = store.get("r1")
    assert run is not None
    assert run.requests == []  # the batch is all or nothing


def test_delete_removes_the_run_and_its_requests(store: BenchmarkStore, engine: Engine) -> None:
    rng = random.Random(1)
    for run_id in ("keep", "drop"):
        store.create(new_run(run_id))
        store.add_requests(run_id, [request(rng, 0, i) for i in range(5)])
    assert store.delete("drop") is True
    assert store.delete("drop") is False
    assert store.get("drop") is None
    with engine.connect() as conn:
        left = conn.execute(
            select(BenchmarkRequestRow.run_id, func.count()).group_by(BenchmarkRequestRow.run_id)
        )
        assert [tuple(row) for row in left] == [("keep", 5)]


# --- listing -----------------------------------------------------------------------------------


def test_list_filters_and_puts_the_newest_first(store: BenchmarkStore) -> None:
    rng = random.Random(2)
    specs = [
        ("r1", "llama-8b", "sweep", RunStatus.COMPLETE, 100.0),
        ("r2", "llama-8b", "depth", RunStatus.COMPLETE, 200.0),
        ("r3", "qwen-32b", "sweep", RunStatus.FAILED, 300.0),
        ("r4", None, "sweep", RunStatus.COMPLETE, 400.0),
        ("r5", "llama-8b", "sweep", RunStatus.PARTIAL, 500.0),
        ("r0", "llama-8b", "sweep", RunStatus.COMPLETE, 500.0),  # same start: run_id breaks the tie
    ]
    for run_id, model_id, kind, status, started in specs:
        store.create(new_run(run_id, model_id=model_id, kind=kind, status=status, started_at=started))
        store.add_requests(run_id, [request(rng, 0, 0)])

    def ids(**filters: Any) -> list[str]:
        runs = store.list(**filters)
        assert all(run.requests == [] for run in runs)  # listings never carry requests
        return [run.run_id for run in runs]

    assert ids() == ["r5", "r0", "r4", "r3", "r2", "r1"]
    assert ids(model_id="llama-8b") == ["r5", "r0", "r2", "r1"]
    assert ids(kind="depth") == ["r2"]
    assert ids(status=RunStatus.COMPLETE) == ["r0", "r4", "r2", "r1"]
    assert ids(model_id="llama-8b", kind="sweep", status=RunStatus.COMPLETE) == ["r0", "r1"]
    assert ids(since=200.0, until=500.0) == ["r4", "r3", "r2"]  # since inclusive, until exclusive
    assert ids(limit=2) == ["r5", "r0"]
    assert ids(model_id="nobody") == []
    listed = store.list(model_id="qwen-32b")[0]
    assert listed == new_run("r3", model_id="qwen-32b", status=RunStatus.FAILED, started_at=300.0)


# --- a killed app --------------------------------------------------------------------------------


def test_mark_interrupted_turns_orphaned_running_runs_into_partial(store: BenchmarkStore) -> None:
    rng = random.Random(3)
    store.create(new_run("orphan1", started_at=1.0))
    store.add_requests("orphan1", [request(rng, 0, 0)])
    store.create(new_run("orphan2", started_at=2.0))
    store.create(new_run("done", started_at=3.0))
    store.finish("done", RunStatus.COMPLETE, 4.0)

    assert store.mark_interrupted() == 2
    assert store.mark_interrupted() == 0  # the next start finds nothing to do
    for run_id in ("orphan1", "orphan2"):
        run = store.get(run_id)
        assert run is not None
        assert (run.status, run.error, run.ended_at) == (RunStatus.PARTIAL, INTERRUPTED, None)
    orphan = store.get("orphan1")
    assert orphan is not None
    assert len(orphan.requests) == 1  # what it measured is kept
    done = store.get("done")
    assert done is not None
    assert (done.status, done.error) == (RunStatus.COMPLETE, None)


# --- refused writes ----------------------------------------------------------------------------


@contextmanager
def connections_with(engine: Engine, pragma: str) -> Iterator[None]:
    """Every connection of ``engine`` runs ``pragma`` first; SQLite's own errors follow from it."""

    def apply(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(pragma)

    event.listen(engine, "connect", apply)
    engine.dispose()
    try:
        yield
    finally:
        event.remove(engine, "connect", apply)
        engine.dispose()


def test_a_read_only_database_is_a_clear_error_and_writes_resume_after(
    store: BenchmarkStore, engine: Engine, settings: Settings
) -> None:
    store.create(new_run("r1"))
    # query_only makes SQLite refuse writes with the same error as a read-only file or mount
    # (root, which runs these tests, can write a chmod-ed file anyway).
    with connections_with(engine, "PRAGMA query_only = ON"):
        with pytest.raises(BenchmarkStoreUnwritable) as refused:
            store.add_requests("r1", [failed_request(0, 0)])
        message = str(refused.value)
        assert message.startswith(
            "the benchmark store can't be written: attempt to write a readonly database"
        )
        assert str(sqlite_path(settings.db_url)) in message
        assert isinstance(refused.value, StoreUnwritable)  # the API's 503 "store_unwritable"
        assert store.write_error == message
        for write in (
            lambda: store.create(new_run("r2")),
            lambda: store.finish("r1", RunStatus.COMPLETE, 2.0),
            store.mark_interrupted,
            lambda: store.delete("r1"),
        ):
            with pytest.raises(BenchmarkStoreUnwritable):
                write()
        assert store.list()[0].run_id == "r1"  # reading still works
    store.add_requests("r1", [failed_request(0, 0)])
    assert store.write_error is None
    run = store.get("r1")
    assert run is not None
    assert len(run.requests) == 1
    assert run.status == RunStatus.RUNNING


def test_a_full_disk_is_a_clear_error_and_nothing_half_written(store: BenchmarkStore, engine: Engine) -> None:
    store.create(new_run("r1"))
    rng = random.Random(4)
    big = [request(rng, 0, i) for i in range(400)]
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    # The file may not grow past its size: SQLite's "database or disk is full", as on a full disk.
    with (
        connections_with(engine, f"PRAGMA max_page_count = {pages}"),
        pytest.raises(BenchmarkStoreUnwritable, match="database or disk is full"),
    ):
        store.add_requests("r1", big)
    run = store.get("r1")
    assert run is not None
    assert run.requests == []
    assert store.sizes("r1") == (0, 0, 0)


# --- exports -----------------------------------------------------------------------------------


def test_exports_carry_the_stored_run_without_its_text(store: BenchmarkStore) -> None:
    rng = random.Random(6)
    store.create(new_run())
    store.add_requests(
        "a1b2c3d4", [request(rng, 0, 0, warmup=True), request(rng, 0, 1), failed_request(1, 0)]
    )
    store.finish("a1b2c3d4", RunStatus.COMPLETE, 1_764_000_200.0, results={"ok": 2})
    run = store.get("a1b2c3d4")
    assert run is not None

    exported = json.loads(json.dumps(run_to_json(run)))
    assert exported["format"] == "dxg-benchmark-run"
    assert exported["version"] == 1
    assert exported["run_id"] == "a1b2c3d4"
    assert exported["status"] == RunStatus.COMPLETE
    assert exported["workload"] == run.workload
    assert exported["results"] == {"ok": 2}
    assert len(exported["requests"]) == 3
    first = exported["requests"][1]
    assert first["frame_ns"] == run.requests[1].frame_ns
    assert first["frame_channel"] == [int(c) for c in run.requests[1].frame_channel]
    assert "text" not in first
    assert RequestRecord(**exported["requests"][1]) == run.requests[1]  # enough to rebuild it

    rows = list(csv.DictReader(io.StringIO(run_to_csv(run))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["level"], r["seq"], r["warmup"]) for r in rows] == [
        ("0", "0", "1"),
        ("0", "1", "0"),
        ("1", "0", "0"),
    ]
    measured = run.requests[1]
    ttft = min(t for t, c in zip(measured.frame_ns, measured.frame_channel, strict=True) if c != Channel.NONE)
    ttfa = min(
        t for t, c in zip(measured.frame_ns, measured.frame_channel, strict=True) if c == Channel.CONTENT
    )
    assert float(rows[1]["ttft_ms"]) == pytest.approx(ttft / 1e6, abs=1e-3)
    assert float(rows[1]["ttfa_ms"]) == pytest.approx(ttfa / 1e6, abs=1e-3)
    assert measured.headers_ns is not None
    assert measured.end_ns is not None
    assert float(rows[1]["ttfr_ms"]) == pytest.approx(measured.headers_ns / 1e6, abs=1e-3)
    assert float(rows[1]["e2e_ms"]) == pytest.approx(measured.end_ns / 1e6, abs=1e-3)
    assert (
        float(rows[1]["ttfr_ms"])
        < float(rows[1]["ttft_ms"])
        < float(rows[1]["ttfa_ms"])
        < float(rows[1]["e2e_ms"])
    )
    assert rows[1]["completion_tokens"] == str(measured.completion_tokens)
    failed = rows[2]
    assert (failed["ttft_ms"], failed["e2e_ms"], failed["frames"]) == ("", "", "0")
    assert (failed["error_class"], failed["status"]) == ("HTTP 503", "503")
