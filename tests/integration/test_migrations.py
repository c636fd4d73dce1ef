"""Alembic migrations against real SQLite files: upgrade, agreement with the models, downgrade."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from benchmark.records import RunRecord
from db.base import Base
from db.benchmark_store import BenchmarkStore  # also puts the benchmark tables on Base.metadata
from db.migrate import alembic_config, downgrade_to, upgrade_to_head
from db.session import make_engine
from db.store import EventStore
from lifecycle.core.events import LoadRequested
from settings import Settings
from tests.support import REPO_ROOT

TABLES = {"events", "model_state", "benchmark_runs", "benchmark_requests"}


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_head_creates_the_file_its_folder_and_the_tables(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'not' / 'yet' / 'there.db'}"
    upgrade_to_head(db_url)
    engine = make_engine(db_url)
    try:
        assert table_names(engine) == TABLES
        store = EventStore(engine)
        store.append("model:m1", [LoadRequested()], 0, "user")
        assert store.model_state("m1") is not None
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_keeps_data(settings: Settings) -> None:
    upgrade_to_head(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        EventStore(engine).append("model:m1", [LoadRequested()], 0, "user")
        upgrade_to_head(settings.db_url)
        assert EventStore(engine).current_version("model:m1") == 1
    finally:
        engine.dispose()


def test_models_and_migrations_agree(settings: Settings) -> None:
    upgrade_to_head(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_the_tables(settings: Settings) -> None:
    upgrade_to_head(settings.db_url)
    downgrade_to(settings.db_url, "base")
    engine = make_engine(settings.db_url)
    try:
        assert table_names(engine) == set()
    finally:
        engine.dispose()
    upgrade_to_head(settings.db_url)  # and back up again


def test_0002_adds_and_removes_the_benchmark_tables_around_existing_events(settings: Settings) -> None:
    command.upgrade(alembic_config(settings.db_url), "0001")
    engine = make_engine(settings.db_url)
    try:
        EventStore(engine).append("model:m1", [LoadRequested()], 0, "user")
        upgrade_to_head(settings.db_url)
        assert table_names(engine) == TABLES
        run = RunRecord("r1", "sweep", "http://127.0.0.1:8000/v1", {"seed": 0}, 1.0, model_id="m1")
        BenchmarkStore(engine).create(run)
        downgrade_to(settings.db_url, "0001")
        assert table_names(engine) == {"events", "model_state"}
        store = EventStore(engine)
        assert [e.type for e in store.read_stream("model:m1")] == ["LoadRequested"]
        assert store.model_state("m1") is not None
        upgrade_to_head(settings.db_url)  # and back up: the tables return, empty
        assert BenchmarkStore(engine).list() == []
    finally:
        engine.dispose()


def test_alembic_cli_reads_the_url_from_settings_and_reports_no_drift(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {"DXG_DB_URL": db_url, "PATH": "/usr/bin:/bin"}
    alembic = [sys.executable, "-m", "alembic"]
    for args in (["upgrade", "head"], ["check"], ["current"]):
        done = subprocess.run(
            [*alembic, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    assert "0002 (head)" in done.stdout
    assert (tmp_path / "cli.db").exists()
