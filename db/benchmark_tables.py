"""The benchmark's two tables: one row per run, one row per request with its packed timeline.

Apart from the event log on purpose: a run is a measurement, not a lifecycle fact, and it is
written in bulk (thousands of requests) where events are written one command at a time.
Run times are UNIX epoch seconds as REAL; request times are integer nanoseconds as recorded
(see benchmark.records). The request text is never stored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from benchmark.records import RunStatus
from db.base import Base

RUN_ID_MAX = 64
_STATUSES = ", ".join(f"'{status}'" for status in RunStatus.ALL)


class BenchmarkRunRow(Base):
    __tablename__ = "benchmark_runs"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUSES})", name="status_known"),
        # "This model's runs, newest first" (history, A/B pickers) and "all runs, newest first".
        Index("ix_benchmark_runs_model_id_started_at", "model_id", "started_at"),
        Index("ix_benchmark_runs_started_at", "started_at"),
    )

    run_id: Mapped[str] = mapped_column(String(RUN_ID_MAX), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[str | None] = mapped_column(String(64))
    engine: Mapped[str | None] = mapped_column(String(32))
    served_model: Mapped[str | None] = mapped_column(Text)
    base_url: Mapped[str] = mapped_column(Text)
    catalog_entry: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    server_meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    host: Mapped[dict[str, Any]] = mapped_column(JSON)
    workload: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    health: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    results: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Totals kept by every add_requests, so a listing shows a run's size without reading requests.
    request_count: Mapped[int] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(BigInteger)
    timeline_bytes: Mapped[int] = mapped_column(BigInteger)


class BenchmarkRequestRow(Base):
    __tablename__ = "benchmark_requests"

    # (run_id, ordinal) as the key: a run's requests, in order, are one range scan of it.
    run_id: Mapped[str] = mapped_column(
        String(RUN_ID_MAX), ForeignKey("benchmark_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    ordinal: Mapped[int] = mapped_column(Integer, primary_key=True)
    level: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    warmup: Mapped[bool] = mapped_column(Boolean)
    intended_ns: Mapped[int] = mapped_column(BigInteger)
    sent_ns: Mapped[int | None] = mapped_column(BigInteger)
    requested_output_tokens: Mapped[int | None] = mapped_column(Integer)
    requested_prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    headers_ns: Mapped[int | None] = mapped_column(BigInteger)
    end_ns: Mapped[int | None] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)
    error_class: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    server_timings: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # benchmark.timeline_codec's blob of (frame_ns, frame_bytes, frame_channel); NULL: no frames.
    timeline: Mapped[bytes | None] = mapped_column(LargeBinary)
