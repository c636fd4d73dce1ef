"""Benchmark runs on disk: a run row written at start, requests appended level by level, the
verdict written at the end, and runs a killed app left behind marked as such at the next start.

Each request's frames are one blob (benchmark.timeline_codec), about 4 bytes a frame, so a
run of 10k requests of 500 frames is ~20 MB rather than the ~150 MB of JSON lists. The
request text never reaches the database. Writes follow the event store's rules (db.store):
BEGIN IMMEDIATE, and a refused write (disk full, read-only file) is a ``StoreUnwritable``
that says where and why, remembered in ``write_error`` until a write succeeds again.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import Connection, Engine, Row, delete, insert, select, update
from sqlalchemy.exc import OperationalError

from benchmark.records import OUTCOME_FIELDS, RequestRecord, RunRecord, RunStatus
from benchmark.timeline_codec import decode, encode
from db.benchmark_tables import RUN_ID_MAX, BenchmarkRequestRow, BenchmarkRunRow
from db.session import read_connection
from lifecycle.core.errors import LifecycleError, StoreUnwritable

INTERRUPTED: Final = "the process running it stopped during the run"
_INSERT_BATCH: Final = 500  # rows per executemany: bounds the parameters held at once

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_RUN_COLUMNS = (
    BenchmarkRunRow.run_id,
    BenchmarkRunRow.kind,
    BenchmarkRunRow.base_url,
    BenchmarkRunRow.workload,
    BenchmarkRunRow.started_at,
    BenchmarkRunRow.model_id,
    BenchmarkRunRow.engine,
    BenchmarkRunRow.served_model,
    BenchmarkRunRow.catalog_entry,
    BenchmarkRunRow.server_meta,
    BenchmarkRunRow.host,
    BenchmarkRunRow.ended_at,
    BenchmarkRunRow.status,
    BenchmarkRunRow.error,
    BenchmarkRunRow.health,
    BenchmarkRunRow.results,
)
# RequestRecord's stored scalar fields: the row columns of the same names.
_REQUEST_FIELDS: Final = (
    "level",
    "seq",
    "warmup",
    "intended_ns",
    "sent_ns",
    "requested_output_tokens",
    "requested_prompt_tokens",
    "headers_ns",
    "end_ns",
    *OUTCOME_FIELDS,
    "server_timings",
)
_REQUEST_COLUMNS = tuple(getattr(BenchmarkRequestRow, name) for name in _REQUEST_FIELDS)


class UnknownRun(LifecycleError, LookupError):
    status_code = 404
    error = "unknown_run"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"there is no benchmark run {run_id!r}")


class BenchmarkStoreUnwritable(StoreUnwritable):
    """A ``StoreUnwritable`` (same 503 and code for the API) worded for a benchmark run."""

    def __init__(self, where: str, cause: str) -> None:
        super().__init__(where, cause)
        self.args = (
            f"the benchmark store can't be written: {cause} at {where}. Free space or fix the file's "
            "permissions; this run's results are not saved until it can write again",
        )


def _run_values(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "model_id": run.model_id,
        "engine": run.engine,
        "served_model": run.served_model,
        "base_url": run.base_url,
        "catalog_entry": run.catalog_entry,
        "server_meta": run.server_meta,
        "host": run.host,
        "workload": run.workload,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "status": run.status,
        "error": run.error,
        "health": run.health,
        "results": run.results,
        "request_count": 0,
        "chunk_count": 0,
        "timeline_bytes": 0,
    }


def _run(row: Row[Any]) -> RunRecord:
    return RunRecord(**row._asdict())


def _request_values(record: RequestRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in _REQUEST_FIELDS}
    # A request that never got a frame (refused, unreachable) stores NULL rather than an empty blob.
    values["timeline"] = (
        encode(record.frame_ns, record.frame_bytes, record.frame_channel) if record.frame_ns else None
    )
    return values


@dataclass(frozen=True)
class _Batch:
    """Requests ready to insert, with what they add to the run's totals."""

    rows: list[dict[str, Any]]
    chunks: int
    blob_bytes: int


def _batch(records: Sequence[RequestRecord]) -> _Batch:
    rows = [_request_values(r) for r in records]
    return _Batch(
        rows,
        chunks=sum(len(r.frame_ns) for r in records),
        blob_bytes=sum(len(row["timeline"]) for row in rows if row["timeline"] is not None),
    )


def _request(row: Row[Any]) -> RequestRecord:
    values = row._asdict()
    blob = values.pop("timeline")
    record = RequestRecord(**values)
    if blob is not None:
        record.frame_ns, record.frame_bytes, record.frame_channel = decode(blob)
    return record


def _check_status(status: str) -> str:
    if status not in RunStatus.ALL:
        raise ValueError(f"unknown run status {status!r}; expected one of {', '.join(RunStatus.ALL)}")
    return status


class BenchmarkStore:
    """Creates, fills, finishes, reads, lists and deletes benchmark runs."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # Why the last write failed (None: it succeeded, or none failed yet), as EventStore has it.
        self.write_error: str | None = None

    @property
    def engine(self) -> Engine:
        return self._engine

    # --- writing -------------------------------------------------------------------------

    def create(self, run: RunRecord) -> None:
        """Insert the run's row (normally at its start, status running). Requests it already
        carries (an imported run) are stored with it, in order."""
        if not run.run_id or len(run.run_id) > RUN_ID_MAX:
            raise ValueError(f"run_id must be 1-{RUN_ID_MAX} characters, got {run.run_id!r}")
        _check_status(run.status)
        batch = _batch(run.requests)

        def write(conn: Connection) -> None:
            conn.execute(insert(BenchmarkRunRow), [_run_values(run)])
            self._insert_requests(conn, run.run_id, 0, batch)

        self._write(write)

    def add_requests(self, run_id: str, records: Sequence[RequestRecord]) -> None:
        """Append ``records`` to the run, numbered after those already stored; call it as each
        level finishes so a crash loses at most the level in flight."""
        if not records:
            return
        # Encoding is the CPU work; do it before taking the write lock.
        batch = _batch(records)

        def write(conn: Connection) -> None:
            count = conn.execute(
                select(BenchmarkRunRow.request_count).where(BenchmarkRunRow.run_id == run_id)
            ).scalar()
            if count is None:
                raise UnknownRun(run_id)
            self._insert_requests(conn, run_id, count, batch)

        self._write(write)

    def finish(
        self,
        run_id: str,
        status: str,
        ended_at: float,
        error: str | None = None,
        health: builtins.list[dict[str, Any]] | None = None,
        results: dict[str, Any] | None = None,
    ) -> None:
        """Record how the run ended. ``health`` and ``results`` left None keep what is stored."""
        values: dict[str, Any] = {"status": _check_status(status), "ended_at": ended_at, "error": error}
        if health is not None:
            values["health"] = health
        if results is not None:
            values["results"] = results

        def write(conn: Connection) -> None:
            done = conn.execute(
                update(BenchmarkRunRow).where(BenchmarkRunRow.run_id == run_id).values(values)
            )
            if done.rowcount == 0:
                raise UnknownRun(run_id)

        self._write(write)

    def delete(self, run_id: str) -> bool:
        """Remove the run and its requests; False when there was no such run."""

        def write(conn: Connection) -> bool:
            # Explicit rather than trusting ON DELETE CASCADE: foreign keys are a per-connection
            # SQLite setting, and a connection made elsewhere may not have turned them on.
            conn.execute(delete(BenchmarkRequestRow).where(BenchmarkRequestRow.run_id == run_id))
            return conn.execute(delete(BenchmarkRunRow).where(BenchmarkRunRow.run_id == run_id)).rowcount > 0

        return self._write(write)

    def mark_interrupted(self, run_ids: Collection[str] | None = None, reason: str = INTERRUPTED) -> int:
        """Turn runs still 'running' (all, or those named) into 'partial': their process is gone.
        ``reason`` becomes their error. Returns how many were marked.

        Without ``run_ids`` the caller must know no live process runs a benchmark on this
        database (``benchmark.orphans`` names only runs whose process has died)."""

        def write(conn: Connection) -> int:
            query = update(BenchmarkRunRow).where(BenchmarkRunRow.status == RunStatus.RUNNING)
            if run_ids is not None:
                query = query.where(BenchmarkRunRow.run_id.in_(list(run_ids)))
            done = conn.execute(query.values(status=RunStatus.PARTIAL, error=reason))
            return done.rowcount

        marked = self._write(write)
        if marked:
            log.warning("marked %d benchmark run(s) partial: %s", marked, reason)
        return marked

    @staticmethod
    def _insert_requests(conn: Connection, run_id: str, first: int, batch: _Batch) -> None:
        if not batch.rows:
            return
        for start in range(0, len(batch.rows), _INSERT_BATCH):
            rows = [
                {**values, "run_id": run_id, "ordinal": first + start + i}
                for i, values in enumerate(batch.rows[start : start + _INSERT_BATCH])
            ]
            conn.execute(insert(BenchmarkRequestRow), rows)
        conn.execute(
            update(BenchmarkRunRow)
            .where(BenchmarkRunRow.run_id == run_id)
            .values(
                request_count=BenchmarkRunRow.request_count + len(batch.rows),
                chunk_count=BenchmarkRunRow.chunk_count + batch.chunks,
                timeline_bytes=BenchmarkRunRow.timeline_bytes + batch.blob_bytes,
            )
        )

    def _write(self, work: Callable[[Connection], _T]) -> _T:
        try:
            with self._engine.begin() as conn:  # BEGIN IMMEDIATE (db.session)
                result = work(conn)
        except OperationalError as exc:
            # Disk full, a read-only file, an I/O error: say so plainly instead of a driver trace.
            failure = BenchmarkStoreUnwritable(
                self._where(), str(exc.orig) if exc.orig is not None else str(exc)
            )
            self.write_error = str(failure)
            log.error("%s", failure)
            raise failure from exc
        self.write_error = None
        return result

    def _where(self) -> str:
        return self._engine.url.render_as_string(hide_password=True).removeprefix("sqlite:///")

    # --- reading -------------------------------------------------------------------------

    def get(self, run_id: str, with_requests: bool = True) -> RunRecord | None:
        """The run as stored, its requests in the order they were added; None if unknown."""
        with read_connection(self._engine) as conn, conn.begin():  # one snapshot for both reads
            row = conn.execute(select(*_RUN_COLUMNS).where(BenchmarkRunRow.run_id == run_id)).one_or_none()
            if row is None:
                return None
            run = _run(row)
            if with_requests:
                run.requests = list(self._requests(conn, run_id))
        return run

    def list(
        self,
        model_id: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> builtins.list[RunRecord]:
        """Runs newest first, without their requests. ``since`` and ``until`` bound
        ``started_at`` (since inclusive, until exclusive)."""
        query = select(*_RUN_COLUMNS).order_by(
            BenchmarkRunRow.started_at.desc(), BenchmarkRunRow.run_id.desc()
        )
        if model_id is not None:
            query = query.where(BenchmarkRunRow.model_id == model_id)
        if kind is not None:
            query = query.where(BenchmarkRunRow.kind == kind)
        if status is not None:
            query = query.where(BenchmarkRunRow.status == status)
        if since is not None:
            query = query.where(BenchmarkRunRow.started_at >= since)
        if until is not None:
            query = query.where(BenchmarkRunRow.started_at < until)
        with read_connection(self._engine) as conn:
            return [_run(row) for row in conn.execute(query.limit(limit))]

    def sizes(self, run_id: str) -> tuple[int, int, int] | None:
        """(requests, frames, timeline bytes) of a run, from its totals; None if unknown."""
        query = select(
            BenchmarkRunRow.request_count, BenchmarkRunRow.chunk_count, BenchmarkRunRow.timeline_bytes
        ).where(BenchmarkRunRow.run_id == run_id)
        with read_connection(self._engine) as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else (row[0], row[1], row[2])

    @staticmethod
    def _requests(conn: Connection, run_id: str) -> Iterator[RequestRecord]:
        query = (
            select(*_REQUEST_COLUMNS, BenchmarkRequestRow.timeline)
            .where(BenchmarkRequestRow.run_id == run_id)
            .order_by(BenchmarkRequestRow.ordinal)
        )
        for row in conn.execute(query):
            yield _request(row)
