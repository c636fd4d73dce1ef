"""Engine factory: SQLite tuned for one writer at a time and many readers.

- WAL: readers never block the writer and the writer never blocks readers.
- ``synchronous=FULL``: a commit is on disk before ``append`` returns, so a power
  cut or ``kill -9`` never loses an event we reported as stored.
- ``busy_timeout``: a writer waits for the lock instead of failing with
  "database is locked".
- ``BEGIN IMMEDIATE`` for transactions: the write lock is taken up front. With
  the driver's default deferred BEGIN, a read-then-write transaction (read the
  stream version, then insert) has to upgrade its lock, and in WAL mode that
  upgrade fails at once with SQLITE_BUSY, ignoring the busy timeout, whenever
  another writer committed since the read.

Python 3.11's sqlite3 has no ``autocommit`` attribute, so this uses the recipe
from SQLAlchemy 2.1's SQLite dialect docs ("Enabling Non-Legacy SQLite
Transactional Modes"): switch the driver's own BEGIN off with
``isolation_level = None`` and emit BEGIN from the engine's ``begin`` event.
Read-only work opts into a deferred BEGIN through ``read_connection`` so it
does not queue behind writers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

from settings import sqlite_path

DEFAULT_BUSY_TIMEOUT_S: Final = 10.0
BeginMode = Literal["DEFERRED", "IMMEDIATE", "EXCLUSIVE"]
# Connection execution option choosing the BEGIN flavour; IMMEDIATE when absent.
BEGIN_MODE_OPTION: Final = "dxg_sqlite_begin"


def ensure_sqlite_dir(db_url: str) -> None:
    """Create the folder of a ``sqlite:///`` file; SQLite creates the file but not its folder."""
    path = sqlite_path(db_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def make_engine(db_url: str, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S, echo: bool = False) -> Engine:
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, echo=echo)
    engine = create_engine(url, echo=echo, connect_args={"timeout": busy_timeout_s})
    busy_timeout_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see _on_begin
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode: BeginMode = conn.get_execution_options().get(BEGIN_MODE_OPTION, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose transactions begin DEFERRED: a consistent snapshot, no write lock."""
    options: dict[str, Any] = {BEGIN_MODE_OPTION: "DEFERRED"}
    with engine.connect().execution_options(**options) as conn:
        yield conn
