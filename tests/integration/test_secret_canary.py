"""A server that prints its secrets in any shape: the values reach no answer, no store, no log file.

The canary is handed to a real server process through the catalog (a pass-through NGC_API_KEY
and a fixed HF_TOKEN); the server prints them the ways real servers do (``using key <v>``,
``{ngc: <v>}``) and dies before it is ready. Then every answer of the API and every byte of the
event store are searched for them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.app_harness import api_settings, serve
from tests.catalogs import leaking_process, write_catalog

CANARY = "canary-7f3a9c1e5b2d4f60"  # looks like nothing the pattern-based redaction knows
FIXED = "hf-fixed-9d8c7b6a5f4e"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("NGC_API_KEY", CANARY)
    leaky = leaking_process("leaky", tmp_path, {"NGC_API_KEY": None, "HF_TOKEN": FIXED})
    catalog = write_catalog(tmp_path / "models.yaml", leaky)
    with serve(api_settings(tmp_path, catalog)) as test_client:
        yield test_client


def test_a_servers_printed_secrets_reach_no_answer_and_no_store(
    client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        answer = client.post("/api/models/leaky/load?wait=true&timeout_s=30")
        assert answer.status_code == 409, answer.text  # it died before it was ready
        tail = client.get("/api/models/leaky/logs?tail=50")
        assert "using key ***" in tail.text, tail.text  # the lines are there, masked
        assert "{ngc: ***}" in tail.text
        answers = [
            answer,
            tail,
            client.get("/api/models/leaky/logs?tail=50", headers={"Accept": "text/plain"}),
            client.get("/api/models/leaky"),
            client.get("/api/models"),
            client.get("/api/events?model=leaky&limit=100"),
            client.get("/api/events?limit=100"),
        ]
        events = client.get("/api/events?model=leaky").json()["events"]
        assert any("***" in json.dumps(e["payload"]) for e in events), events  # a tail was kept
    for response in answers:
        assert CANARY not in response.text, response.url
        assert FIXED not in response.text, response.url
    # The server's own log file: its output went through the masking relay before it was written.
    log_file = (tmp_path / "logs" / "leaky.log").read_text()
    assert "using key ***" in log_file
    assert CANARY not in log_file
    assert FIXED not in log_file
    store = b"".join(path.read_bytes() for path in tmp_path.glob("dxg.db*"))
    assert store, "no store files found"
    assert CANARY.encode() not in store
    assert FIXED.encode() not in store
    assert CANARY not in caplog.text
    assert FIXED not in caplog.text
