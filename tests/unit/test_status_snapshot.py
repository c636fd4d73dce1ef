"""What the gateway may route by without reading the database again (gateway.status_snapshot)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import pytest

from gateway.status_snapshot import MAX_AGE_S, StatusSnapshot, find_model
from lifecycle.core.status_view import ModelStatus

COLD = ModelStatus(
    id="m", name="M", url="http://127.0.0.1:9", served_model="served-m", engine="llamacpp", runtime="process",
    size=None, format=None, supports_tools=False, simulated=True, loaded=False, available=True,
    can_load=True, phase="stopped", desired="unloaded", since=None, restarts=0, last_error=None,
    status="Available (Not Loaded)", dot="red", reason=None, usual_load_s=None, manual_start=None,
)  # fmt: skip
READY = replace(COLD, loaded=True, phase="ready", desired="loaded")


class FakeService:
    """The two things the snapshot reads: the change count and the statuses (counted)."""

    def __init__(self, statuses: Sequence[ModelStatus]) -> None:
        self.changes = 0
        self.statuses = list(statuses)
        self.reads = 0
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None

    def status(self) -> list[ModelStatus]:
        if self.gate is not None:
            self.gate.wait(5)
        self.reads += 1
        if self.fail is not None:
            raise self.fail
        return list(self.statuses)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _snapshot(service: FakeService, clock: Clock) -> StatusSnapshot:
    return StatusSnapshot(lambda: cast(Any, service), clock)


def test_a_catalog_id_wins_over_a_served_name_and_an_ambiguous_served_name_names_nothing() -> None:
    other = replace(COLD, id="served-m", served_model="x")
    assert find_model([COLD, other], "served-m") is other
    assert find_model([COLD], "served-m") is COLD
    twin = replace(COLD, id="m2")
    assert find_model([COLD, twin], "served-m") is None
    assert find_model([COLD], "nope") is None


def test_a_loaded_model_is_routed_from_memory_until_something_is_recorded() -> None:
    service, clock = FakeService([READY]), Clock()
    snapshot = _snapshot(service, clock)

    async def scenario() -> None:
        for _ in range(5):
            model, statuses = await snapshot.find("m")
            assert model == READY
            assert list(statuses) == [READY]
        assert service.reads == 1
        service.changes += 1  # a crash, an unload, a catalog edit: recorded
        service.statuses = [COLD]
        model, _ = await snapshot.find("m")
        assert model == COLD
        assert service.reads == 2

    asyncio.run(scenario())


def test_an_old_loaded_answer_is_used_once_more_and_read_again_behind_the_request() -> None:
    service, clock = FakeService([READY]), Clock()
    snapshot = _snapshot(service, clock)

    async def scenario() -> None:
        await snapshot.find("m")
        clock.now += MAX_AGE_S + 0.1
        service.gate = threading.Event()  # the background read blocks until let go
        service.statuses = [replace(READY, url="http://127.0.0.1:10")]
        model, _ = await snapshot.find("m")
        assert model == READY  # answered at once, from what was kept
        model, _ = await snapshot.find("m")  # a second request: still one read in flight
        assert model == READY
        service.gate.set()
        for _ in range(500):  # until the read in its worker thread has landed
            model, _ = await snapshot.find("m")
            if model is not None and model.url == "http://127.0.0.1:10":
                break
            await asyncio.sleep(0.01)
        assert model is not None
        assert model.url == "http://127.0.0.1:10"
        assert service.reads == 2  # while it was in flight, nobody read again

    asyncio.run(scenario())


@pytest.mark.parametrize("cached", [[COLD], []], ids=["not-loaded", "not-in-catalog"])
def test_a_no_is_trusted_only_while_fresh(cached: list[ModelStatus]) -> None:
    """An external server that just came up, or a model just added, is not refused for a second."""
    service, clock = FakeService(cached), Clock()
    snapshot = _snapshot(service, clock)

    async def scenario() -> None:
        await snapshot.find("m")
        await snapshot.find("m")
        assert service.reads == 1  # fresh: the same answer
        service.statuses = [READY]  # came up without anything recorded
        clock.now += MAX_AGE_S
        model, _ = await snapshot.find("m")
        assert model == READY
        assert service.reads == 2

    asyncio.run(scenario())


def test_a_failed_read_behind_a_request_is_logged_and_the_next_read_meets_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, clock = FakeService([READY]), Clock()
    snapshot = _snapshot(service, clock)

    async def scenario() -> None:
        await snapshot.find("m")
        clock.now += MAX_AGE_S
        service.fail = RuntimeError("database is locked")
        model, _ = await snapshot.find("m")
        assert model == READY
        for _ in range(200):
            if "database is locked" in caplog.text:
                break
            await asyncio.sleep(0.01)
        service.changes += 1
        with pytest.raises(RuntimeError, match="database is locked"):
            await snapshot.find("m")

    asyncio.run(scenario())
    assert "reading the models' statuses in the background failed" in caplog.text
