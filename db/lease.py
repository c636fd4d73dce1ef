"""One live app instance per database: an OS lock on a file beside it, naming its holder.

Two instances on one database fight: each reads the other's servers as crashed and starts
its own, and one's shutdown stops the other's models. So the app takes an exclusive,
non-blocking ``flock`` on ``<database>.lock`` before it touches the database, and writes who
holds it (pid, host, address, since when) into the file for the next one to quote.

The kernel drops the lock when its holder's process ends, however it ends (a SIGKILL too), so
a stale lease is taken over by simply taking the lock; the leftover servers are then adopted
as usual. Databases other than a SQLite file (a server, or in-memory) get no lease.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any, Final

from settings import sqlite_path

LOCK_SUFFIX: Final = ".lock"


class DatabaseInUse(RuntimeError):
    """Another live instance holds the database's lease."""

    def __init__(self, database: Path, holder: dict[str, Any]) -> None:
        self.database = database
        self.holder = holder
        since = holder.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "an unknown time"
        who = (
            f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, listening on "
            f"{holder.get('address', '?')}, since {when}"
        )
        super().__init__(
            f"another instance of the app uses the database {database} ({who}). Two instances on "
            "one database would each restart and stop the other's servers: stop that instance "
            "first, or give this one its own database with DXG_DB_URL"
        )


class InstanceLease:
    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self._handle: IO[str] | None = handle

    @classmethod
    def acquire(cls, db_url: str, address: str) -> InstanceLease | None:
        """Take the lease of ``db_url``'s file for this process; None when it has no file."""
        database = sqlite_path(db_url)
        if database is None:
            return None
        path = database.with_name(database.name + LOCK_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            handle.close()
            raise DatabaseInUse(database, holder) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "address": address, "since": time.time()}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder) + "\n")
        handle.flush()
        return cls(path, handle)

    def release(self) -> None:
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            self._handle.seek(0)
            self._handle.truncate()  # no holder to quote once it is free
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None


def _read_holder(handle: IO[str]) -> dict[str, Any]:
    handle.seek(0)
    try:
        data = json.loads(handle.read() or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
