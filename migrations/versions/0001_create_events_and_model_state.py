"""Create the event log and the model projection.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 18:17:33
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stream", sa.String(length=80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_events_version_positive")),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_events")),
        sa.UniqueConstraint("stream", "version", name=op.f("uq_events_stream_version")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "model_state",
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("desired", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("since", sa.Float(), nullable=True),
        sa.Column("handle", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("desired IN ('loaded', 'unloaded')", name=op.f("ck_model_state_desired_known")),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_model_state")),
    )


def downgrade() -> None:
    op.drop_table("model_state")
    op.drop_table("events")
