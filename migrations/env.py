"""Alembic environment: our engine settings, our metadata, batch mode for SQLite.

The URL comes from, in order: ``alembic -x db_url=...``, the ``sqlalchemy.url``
that db/migrate.py sets when the app migrates at start, and ``Settings().db_url``.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

import db.benchmark_tables  # registers the benchmark tables too
import db.tables  # noqa: F401  (registers the tables on Base.metadata)
from db.base import Base
from db.session import ensure_sqlite_dir, make_engine
from settings import Settings

config = context.config
target_metadata = Base.metadata

# Only the CLI configures logging: when the app migrates at start, fileConfig would
# replace the app's own logging set-up.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    from_cli = context.get_x_argument(as_dictionary=True).get("db_url")
    return from_cli or config.get_main_option("sqlalchemy.url") or Settings().db_url


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of touching a database (``alembic upgrade head --sql``)."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = database_url()
    ensure_sqlite_dir(url)
    # Our engine, so migrations run under the same WAL / BEGIN IMMEDIATE / busy-timeout rules
    # as the app and wait politely for a running app's writes.
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
                # make_engine leaves BEGIN to us, so SQLite DDL is transactional: a failed
                # upgrade rolls back whole instead of leaving half-built tables.
                transactional_ddl=True if sqlite else None,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
