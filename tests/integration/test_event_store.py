"""The event store on a real SQLite file: appends, conflicts, projection, concurrency, crashes."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import Engine, text

from db.session import make_engine
from db.store import AppendGaveUp, ConcurrencyConflict, EventStore
from lifecycle.core.events import (
    Crashed,
    Event,
    GaveUp,
    InvalidStream,
    LoadRequested,
    ReadyObserved,
    RestartScheduled,
    StartFailed,
    StartIssued,
    StopIssued,
    Stopped,
    UnknownEvent,
    UnloadRequested,
    model_id_of,
)
from lifecycle.core.projection import ModelState, fold
from lifecycle.core.states import IllegalTransition, Phase
from settings import Settings, sqlite_path
from tests.support import REPO_ROOT, wait_until

NGC_KEY = "nvapi-THIS-IS-A-TEST-SECRET-0123456789"

# A plausible lifecycle that writers cycle through, so the projection has work to do.
CYCLE: list[Event] = [
    LoadRequested(),
    StartIssued(handle={"kind": "process", "pid": 1}),
    ReadyObserved(load_duration_s=1.5),
    Crashed(exit_code=137, oom=True, log_tail="out of memory"),
    RestartScheduled(delay_s=2.0, attempt=1, at=0.0),
    StartIssued(handle={"kind": "process", "pid": 2}, attempt=2),
    UnloadRequested(),
    StopIssued(),
    Stopped(exit_code=0),
]


@pytest.fixture
def store(engine: Engine) -> EventStore:
    return EventStore(engine)


def db_file(settings: Settings) -> Path:
    path = sqlite_path(settings.db_url)
    assert path is not None
    return path


def assert_projection_is_the_fold(store: EventStore) -> dict[str, ModelState]:
    states = store.model_states()
    streams = {e.stream for e in store.read_all() if model_id_of(e.stream)}
    assert set(states) == {model_id_of(s) for s in streams}
    for stream in streams:
        model_id = model_id_of(stream)
        assert model_id is not None
        assert states[model_id] == fold(store.read_stream(stream)), stream
        assert store.model_state(model_id) == states[model_id]
    return states


def assert_versions_contiguous(store: EventStore, stream: str) -> list[int]:
    versions = [e.version for e in store.read_stream(stream)]
    assert versions == list(range(1, len(versions) + 1)), f"gap or duplicate in {stream}"
    return versions


# --- basics ---------------------------------------------------------------------------


def test_append_then_read_back(store: EventStore) -> None:
    stored = store.append("model:m1", [LoadRequested(), StartIssued(handle={"pid": 7})], 0, "user")
    assert [(e.stream, e.version, e.actor) for e in stored] == [
        ("model:m1", 1, "user"),
        ("model:m1", 2, "user"),
    ]
    assert stored[0].position < stored[1].position
    assert store.read_stream("model:m1") == stored
    assert store.read_stream("model:m1", after_version=1) == stored[1:]
    assert store.current_version("model:m1") == 2
    assert store.current_version("model:other") == 0


def test_stale_version_raises_a_clear_conflict_and_writes_nothing(store: EventStore) -> None:
    store.append("model:m1", [LoadRequested(), UnloadRequested()], 0, "user")
    with pytest.raises(ConcurrencyConflict) as caught:
        store.append("model:m1", [LoadRequested()], 1, "api")
    conflict = caught.value
    assert (conflict.stream, conflict.expected, conflict.actual) == ("model:m1", 1, 2)
    message = str(conflict)
    assert "'model:m1'" in message
    assert "expected version 1" in message
    assert "found version 2" in message
    assert store.current_version("model:m1") == 2
    with pytest.raises(ConcurrencyConflict, match="expected version 5, found version 2"):
        store.append("model:m1", [LoadRequested()], 5, "api")


def test_an_append_that_breaks_the_lifecycle_is_refused_and_writes_nothing(store: EventStore) -> None:
    failed = [LoadRequested(), StartIssued(handle={"pid": 1}), Crashed(exit_code=1), GaveUp("5 crashes", 5)]
    store.append("model:m1", failed, 0, "test")
    assert store.model_state("m1").phase == Phase.FAILED
    # Only a new load request leaves failed; a start straight out of it is a bug in the writer.
    with pytest.raises(IllegalTransition, match="from failed to starting"):
        store.append("model:m1", [StartIssued(handle={"pid": 2})], 4, "test")
    assert store.current_version("model:m1") == 4
    assert store.model_state("m1").phase == Phase.FAILED
    store.append("model:m1", [LoadRequested(), StartIssued(handle={"pid": 2})], 4, "test")
    assert store.model_state("m1").phase == Phase.STARTING


def test_append_retrying_decides_again_after_each_conflict(store: EventStore) -> None:
    seen: list[int] = []

    def decide(version: int) -> list[Event]:
        seen.append(version)
        if len(seen) == 1:  # another writer gets in between this read and the append
            store.append("model:m1", [LoadRequested()], version, "rival")
        return [UnloadRequested()]

    stored = store.append_retrying("model:m1", decide, "test")
    assert seen == [0, 1]
    assert [(e.version, e.type, e.actor) for e in stored] == [(2, "UnloadRequested", "test")]
    assert store.append_retrying("model:m1", lambda version: [], "test") == []  # nothing to do
    assert store.current_version("model:m1") == 2


def test_append_retrying_gives_up_loudly_when_the_stream_never_stands_still(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    def always_beaten(version: int) -> list[Event]:
        store.append("model:m1", [UnloadRequested()], version, "rival")
        return [LoadRequested()]

    with caplog.at_level(logging.ERROR, logger="db.store"), pytest.raises(AppendGaveUp, match="3 conflicts"):
        store.append_retrying("model:m1", always_beaten, "test", attempts=3)
    assert "gave up appending ['LoadRequested'] to model:m1 after 3 conflicts" in caplog.text
    assert {e.actor for e in store.read_stream("model:m1")} == {"rival"}


def test_read_all_after_position_with_limit_and_stream(store: EventStore) -> None:
    store.append("app", [CYCLE[0]], 0, "app")
    store.append("model:a", CYCLE[:3], 0, "user")
    store.append("model:b", CYCLE[:2], 0, "user")
    everything = store.read_all()
    assert [e.position for e in everything] == sorted(e.position for e in everything)
    assert len(everything) == 6
    third = everything[2].position
    assert store.read_all(after_position=third) == everything[3:]
    assert store.read_all(after_position=third, limit=2) == everything[3:5]
    assert store.read_all(stream="model:b") == everything[4:]
    assert store.read_all(after_position=everything[-1].position) == []
    assert store.recent_events("model:a", limit=2) == [everything[3], everything[2]]
    assert store.recent_events(limit=1) == [everything[-1]]


def test_invalid_streams_and_arguments_are_refused(store: EventStore) -> None:
    for stream in ("model:Bad Id", "models:x", "model:"):
        with pytest.raises(InvalidStream):
            store.append(stream, [LoadRequested()], 0, "user")
    with pytest.raises(ValueError, match="at least one event"):
        store.append("model:m1", [], 0, "user")
    with pytest.raises(ValueError, match="actor"):
        store.append("model:m1", [LoadRequested()], 0, "")
    with pytest.raises(InvalidStream):
        store.model_state("../etc")


def test_app_stream_has_no_projection_row(store: EventStore) -> None:
    store.append("app", [LoadRequested()], 0, "app")
    assert store.model_states() == {}


# --- projection -------------------------------------------------------------------------


def test_projection_follows_every_append(store: EventStore) -> None:
    for i, event in enumerate(CYCLE):
        store.append("model:m1", [event], i, "reconciler")
        state = store.model_state("m1")
        assert state == fold(store.read_stream("model:m1"))
        assert state is not None
        assert state.version == i + 1
    assert_projection_is_the_fold(store)


def test_projection_update_is_in_the_same_transaction_as_the_append(
    store: EventStore, engine: Engine
) -> None:
    store.append("model:m1", [LoadRequested()], 0, "user")
    # Make the projection update fail inside SQLite itself: the events of that append must vanish too.
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_projection BEFORE UPDATE ON model_state "
            "BEGIN SELECT RAISE(ABORT, 'projection refused'); END"
        )
    with pytest.raises(Exception, match="projection refused"):
        store.append("model:m1", [StartIssued(handle={"pid": 1})], 1, "reconciler")
    assert store.current_version("model:m1") == 1
    assert [e.type for e in store.read_all()] == ["LoadRequested"]
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_projection")
    store.append("model:m1", [StartIssued(handle={"pid": 1})], 1, "reconciler")
    assert_projection_is_the_fold(store)


def test_rebuild_equals_incremental(store: EventStore, engine: Engine) -> None:
    for n, model_id in enumerate(["a", "b", "c", "d.e_f-1"], start=1):
        for i in range(n * 3):
            store.append(f"model:{model_id}", [CYCLE[i % len(CYCLE)]], i, "test")
    store.append("app", [LoadRequested()], 0, "app")
    incremental = assert_projection_is_the_fold(store)
    with engine.begin() as conn:  # damage the projection every way it can be damaged
        conn.exec_driver_sql("DELETE FROM model_state WHERE model_id = 'a'")
        conn.exec_driver_sql("UPDATE model_state SET phase = 'failed', restarts = 99 WHERE model_id = 'b'")
        conn.exec_driver_sql(
            "INSERT INTO model_state (model_id, desired, phase, restarts, version) "
            "VALUES ('ghost', 'loaded', 'ready', 0, 1)"
        )
    assert store.rebuild_projection() == 4
    assert store.model_states() == incremental


def test_rebuild_of_an_empty_store(store: EventStore) -> None:
    assert store.rebuild_projection() == 0
    assert store.model_states() == {}


def test_a_lagging_projection_row_heals_on_the_next_append(store: EventStore, engine: Engine) -> None:
    store.append("model:m1", CYCLE[:3], 0, "test")
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM model_state")
    store.append("model:m1", [CYCLE[3]], 3, "test")
    state = assert_projection_is_the_fold(store)["m1"]
    assert state.version == 4


def test_unknown_event_types_in_old_data_do_not_break_reads(store: EventStore, engine: Engine) -> None:
    store.append("model:m1", [LoadRequested()], 0, "user")
    with engine.begin() as conn:  # as written by some other version of the app
        conn.exec_driver_sql(
            "INSERT INTO events (stream, version, type, payload, actor, ts) "
            "VALUES ('model:m1', 2, 'ModelRenamed', '{\"to\": \"m2\"}', 'old-app', 1.0)"
        )
    events = store.read_stream("model:m1")
    assert events[1].event == UnknownEvent("ModelRenamed", {"to": "m2"})
    store.append("model:m1", [StartIssued(handle={"pid": 1})], 2, "reconciler")
    store.rebuild_projection()
    assert_projection_is_the_fold(store)


# --- secrets -----------------------------------------------------------------------------


def test_secrets_are_redacted_before_they_are_stored(store: EventStore, settings: Settings) -> None:
    handle = {"kind": "docker", "env": {"NGC_API_KEY": NGC_KEY, "HF_TOKEN": "hf_abc123secret"}}
    log_tail = f"docker run -e NGC_API_KEY={NGC_KEY} nim\nError: password=hunter2 rejected"
    stored = store.append(
        "model:m1",
        [
            StartIssued(handle=handle),
            StartFailed(reason=f"bad key {NGC_KEY}", exit_code=1, log_tail=log_tail),
        ],
        0,
        "reconciler",
    )
    assert stored[0].event == StartIssued(
        handle={"kind": "docker", "env": {"NGC_API_KEY": "***", "HF_TOKEN": "***"}}
    )
    assert store.read_stream("model:m1") == stored
    state = store.model_state("m1")
    assert state is not None
    assert state.last_error == "bad key ***: exited with code 1: Error: password=*** rejected"
    # Nothing secret anywhere in the database file or its WAL.
    raw = b"".join(p.read_bytes() for p in db_file(settings).parent.glob("dxg.db*"))
    for secret in (NGC_KEY, "hf_abc123secret", "hunter2"):
        assert secret.encode() not in raw


# --- SQLite settings -----------------------------------------------------------------------


def test_pragmas_are_in_force(engine: Engine) -> None:
    with engine.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 10_000, "foreign_keys": 1}


def test_transactions_take_the_write_lock_up_front_and_readers_never_wait(
    store: EventStore, engine: Engine, settings: Settings
) -> None:
    store.append("model:m1", [LoadRequested()], 0, "user")
    other = sqlite3.connect(db_file(settings), timeout=0, isolation_level=None)
    try:
        with engine.begin():  # BEGIN IMMEDIATE, before any statement ran
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            # WAL: reads go on while the write lock is held.
            assert store.model_state("m1") is not None
            assert store.current_version("model:m1") == 1
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


# --- concurrency and crashes ----------------------------------------------------------------


def append_with_retry(store: EventStore, stream: str, actor: str) -> tuple[int, int]:
    """Append the stream's next ``CYCLE`` step the way every real writer must: re-read the version
    on a conflict and decide again (the step follows the version, so however writers interleave
    the stream stays a lifecycle the store accepts).

    Returns the committed version and how many conflicts it took.
    """
    conflicts = 0
    while True:
        version = store.current_version(stream)
        event = CYCLE[version % len(CYCLE)]
        try:
            return store.append(stream, [event], version, actor)[0].version, conflicts
        except ConcurrencyConflict:
            conflicts += 1


def writer_main() -> None:
    """A writer process: ``db_url actor count stream...``; count 0 means until killed.

    Prints ``<stream> <version>`` after each commit, so the parent knows what is durable.
    """
    db_url, actor, count, *streams = sys.argv[1:]
    engine = make_engine(db_url)
    store = EventStore(engine)
    i = 0
    while int(count) == 0 or i < int(count):
        for stream in streams:
            version, _ = append_with_retry(store, stream, actor)
            print(stream, version, flush=True)
        i += 1
    engine.dispose()


class WriterProcess:
    """A writer in its own OS process, with its stdout collected as it arrives."""

    def __init__(self, db_url: str, actor: str, count: int, *streams: str) -> None:
        code = "from tests.integration.test_event_store import writer_main; writer_main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, db_url, actor, str(count), *streams],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        # Drain both pipes as output arrives so the writer never blocks on a full pipe.
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.errors), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(pipe: IO[str], sink: list[str]) -> None:
        with pipe:
            for line in pipe:
                sink.append(line)

    def committed(self) -> list[tuple[str, int]]:
        """What the writer reported as committed; a line cut short by a kill does not count."""
        pairs = [line.split() for line in list(self.lines) if line.endswith("\n")]
        return [(stream, int(version)) for stream, version in pairs]

    def finish(self, timeout_s: float) -> tuple[int, str]:
        """Wait for the exit and the last of the output; return the exit code and stderr."""
        returncode = self.proc.wait(timeout=timeout_s)
        for reader in self._readers:
            reader.join(timeout=timeout_s)
        return returncode, "".join(self.errors)


@pytest.mark.slow
def test_threads_and_processes_append_without_locks_gaps_or_duplicates(
    store: EventStore, settings: Settings
) -> None:
    threads_n, per_thread, procs_n, per_proc = 8, 25, 2, 40
    shared = "model:shared"
    procs = [
        WriterProcess(settings.db_url, f"proc{i}", per_proc, shared, f"model:p{i}") for i in range(procs_n)
    ]
    # Let the processes get going first so that all ten writers really overlap.
    wait_until(
        lambda: all(p.committed() for p in procs), timeout_s=30, what="both writer processes to commit"
    )

    errors: list[BaseException] = []
    conflicts: list[int] = []
    shared_committed: list[int] = []

    def thread_writer(i: int) -> None:
        own = f"model:t{i}"
        try:
            for _ in range(per_thread):
                for stream in (shared, own):
                    version, tries = append_with_retry(store, stream, f"thread{i}")
                    conflicts.append(tries)
                    if stream == shared:
                        shared_committed.append(version)
        except BaseException as exc:  # reported below; a thread must not die silently
            errors.append(exc)

    threads = [threading.Thread(target=thread_writer, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    results = [p.finish(timeout_s=120) for p in procs]

    assert errors == []
    for returncode, stderr in results:
        assert returncode == 0, stderr
        assert "locked" not in stderr
    shared_versions = assert_versions_contiguous(store, shared)
    assert len(shared_versions) == threads_n * per_thread + procs_n * per_proc
    for i in range(threads_n):
        assert len(assert_versions_contiguous(store, f"model:t{i}")) == per_thread
    for i, proc in enumerate(procs):
        assert len(assert_versions_contiguous(store, f"model:p{i}")) == per_proc
        shared_committed.extend(v for s, v in proc.committed() if s == shared)
    # Every append got a distinct version of the shared stream: nobody overwrote anybody.
    assert sorted(shared_committed) == shared_versions
    assert sum(conflicts) > 0, "the writers never contended; the test proves nothing"
    incremental = assert_projection_is_the_fold(store)
    store.rebuild_projection()
    assert store.model_states() == incremental


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_committed_event(store: EventStore, settings: Settings) -> None:
    writer = WriterProcess(settings.db_url, "victim", 0, "model:victim")
    wait_until(lambda: len(writer.committed()) >= 40, timeout_s=30, what="the writer to commit 40 events")
    os.kill(writer.proc.pid, signal.SIGKILL)
    returncode, _ = writer.finish(timeout_s=30)
    assert returncode == -signal.SIGKILL

    reported = [v for _, v in writer.committed()]
    stored = assert_versions_contiguous(store, "model:victim")
    assert set(reported) <= set(stored)
    # At most the one commit whose line it had no time to print.
    assert len(stored) - len(reported) in (0, 1)
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    assert_projection_is_the_fold(store)
    # The dead writer's lock is gone: the next append goes straight through.
    store.append("model:victim", [LoadRequested()], len(stored), "survivor")


def test_every_append_is_logged_failures_as_warnings_without_secrets(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dxg.audit")
    store.append("model:m1", [LoadRequested()], 0, "api")
    store.append(
        "model:m1", [Crashed(exit_code=137, oom=True, log_tail="NGC_API_KEY=nvapi-s3cret")], 1, "reconciler"
    )

    records = [r for r in caplog.records if r.name == "dxg.audit"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, "model:m1 LoadRequested by api"),
        (logging.WARNING, "model:m1 Crashed by reconciler: exit_code=137, oom=True"),
    ]
    assert "s3cret" not in caplog.text
