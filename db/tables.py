"""The two tables: the append-only event log and the per-model projection.

Times are UNIX epoch seconds (UTC) stored as REAL, rounded to milliseconds, the
same representation the pure core uses.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, CheckConstraint, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base

STREAM_MAX = 80  # "model:" + a 64-character model id, with room to spare


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (
        # The unique index also serves every "WHERE stream = ?" lookup, so a second
        # index on stream alone would only slow appends.
        UniqueConstraint("stream", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
        # AUTOINCREMENT: positions are never reused, so "read after position N" never misses rows.
        {"sqlite_autoincrement": True},
    )

    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream: Mapped[str] = mapped_column(String(STREAM_MAX))
    version: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(64))
    ts: Mapped[float] = mapped_column(Float)


class ModelStateRow(Base):
    __tablename__ = "model_state"
    __table_args__ = (CheckConstraint("desired IN ('loaded', 'unloaded')", name="desired_known"),)

    model_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    desired: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16))
    since: Mapped[float | None] = mapped_column(Float)
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    restarts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
