"""An event store that refuses writes (a full disk, a file made read-only): every command says
why with a 503, health says the same, models read as unknown, and all recovers by itself.

SQLite's ``query_only`` makes the app's own connections refuse every write with SQLite's real
read-only error, the way an immutable file or a read-only mount does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

import service_access
from tests.app_harness import api_settings, serve
from tests.catalogs import sim_process, write_catalog
from tests.support import free_port


@contextmanager
def refusing_writes(engine: Engine) -> Iterator[None]:
    def read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    event.listen(engine, "connect", read_only)
    engine.dispose()  # every connection from now on is a new, read-only one
    try:
        yield
    finally:
        event.remove(engine, "connect", read_only)
        engine.dispose()


def test_an_unwritable_store_is_a_503_with_its_cause_and_recovers(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "models.yaml", sim_process("sim-a", free_port()))
    with serve(api_settings(tmp_path, catalog)) as client:
        assert client.post("/api/models/sim-a/load?wait=true&timeout_s=30").status_code == 200
        store = service_access.get_service().store
        with refusing_writes(store.engine):
            refused = client.post("/api/models/sim-a/unload")
            assert refused.status_code == 503, refused.text
            body = refused.json()
            assert body["error"] == "store_unwritable"
            assert "the event store can't be written: attempt to write a readonly database" in body["detail"]
            assert str(tmp_path / "dxg.db") in body["detail"]
            health = client.get("/api/health")
            assert health.status_code == 503
            assert health.json()["store"] == {"writable": False, "error": body["detail"]}
            model = client.get("/api/models/sim-a").json()
            assert (model["loaded"], model["dot"]) == (False, "orange"), model
            assert model["status"].startswith("Unknown"), model
        # Writable again: the next command is recorded and everything reads as before.
        assert client.post("/api/models/sim-a/unload?wait=true&timeout_s=30").status_code == 200
        assert client.get("/api/health").status_code == 200
        assert client.get("/api/models/sim-a").json()["status"] != "Unknown"
        types = [e["type"] for e in client.get("/api/events?model=sim-a&limit=100").json()["events"]]
        assert types[:3] == ["Stopped", "StopIssued", "UnloadRequested"], types
