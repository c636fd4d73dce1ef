"""Store benchmark runs and their requests' timelines.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from benchmark.records: a migration is a fixed point in
# history and must not change when the code's list of statuses does.
STATUS_CHECK = "status IN ('running', 'complete', 'partial', 'invalid', 'failed')"


def upgrade() -> None:
    op.create_table(
        "benchmark_runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=True),
        sa.Column("engine", sa.String(length=32), nullable=True),
        sa.Column("served_model", sa.Text(), nullable=True),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("catalog_entry", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("server_meta", sa.JSON(), nullable=False),
        sa.Column("host", sa.JSON(), nullable=False),
        sa.Column("workload", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("health", sa.JSON(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.BigInteger(), nullable=False),
        sa.Column("timeline_bytes", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(STATUS_CHECK, name=op.f("ck_benchmark_runs_status_known")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_benchmark_runs")),
    )
    op.create_index(
        op.f("ix_benchmark_runs_model_id_started_at"),
        "benchmark_runs",
        ["model_id", "started_at"],
        unique=False,
    )
    op.create_index(op.f("ix_benchmark_runs_started_at"), "benchmark_runs", ["started_at"], unique=False)
    op.create_table(
        "benchmark_requests",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("warmup", sa.Boolean(), nullable=False),
        sa.Column("intended_ns", sa.BigInteger(), nullable=False),
        sa.Column("sent_ns", sa.BigInteger(), nullable=True),
        sa.Column("requested_output_tokens", sa.Integer(), nullable=True),
        sa.Column("requested_prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("headers_ns", sa.BigInteger(), nullable=True),
        sa.Column("end_ns", sa.BigInteger(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=True),
        sa.Column("cached_tokens", sa.Integer(), nullable=True),
        sa.Column("finish_reason", sa.Text(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error_class", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("server_timings", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("timeline", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["benchmark_runs.run_id"],
            name=op.f("fk_benchmark_requests_run_id_benchmark_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "ordinal", name=op.f("pk_benchmark_requests")),
    )


def downgrade() -> None:
    op.drop_table("benchmark_requests")
    op.drop_index(op.f("ix_benchmark_runs_started_at"), table_name="benchmark_runs")
    op.drop_index(op.f("ix_benchmark_runs_model_id_started_at"), table_name="benchmark_runs")
    op.drop_table("benchmark_runs")
