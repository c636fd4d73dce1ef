"""The event store: append-only streams with optimistic concurrency, plus the model projection.

Streams are ``model:<id>`` (one per model) and ``app``. An append names the
version the caller last saw; if anyone appended since, it raises
``ConcurrencyConflict`` and writes nothing. The ``model_state`` row of a model
stream is updated in the same transaction as the append, so readers see events
and state change together and ``model_states()`` never replays history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, cast

from sqlalchemy import Connection, Engine, Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from db.session import read_connection
from db.tables import EventRow, ModelStateRow
from lifecycle.core.errors import StoreUnwritable
from lifecycle.core.events import (
    FAILURE_TYPES,
    MODEL_STREAM_PREFIX,
    Event,
    RecordedEvent,
    audit_line,
    check_model_id,
    check_stream,
    from_record,
    model_id_of,
    model_stream,
    redact,
    to_record,
)
from lifecycle.core.projection import ModelState, advance, apply, fold
from lifecycle.core.states import Desired, Phase

ACTOR_MAX: Final = 64
# Model streams sort between these bounds ("model:" < s < "model;"), so the
# UNIQUE(stream, version) index serves "all model streams" as one range scan.
_MODEL_STREAMS_END: Final = MODEL_STREAM_PREFIX[:-1] + chr(ord(MODEL_STREAM_PREFIX[-1]) + 1)
_REBUILD_BATCH: Final = 5000

_EVENT_COLUMNS = (
    EventRow.position,
    EventRow.stream,
    EventRow.version,
    EventRow.type,
    EventRow.payload,
    EventRow.actor,
    EventRow.ts,
)
_STATE_COLUMNS = (
    ModelStateRow.model_id,
    ModelStateRow.desired,
    ModelStateRow.phase,
    ModelStateRow.since,
    ModelStateRow.handle,
    ModelStateRow.restarts,
    ModelStateRow.last_error,
    ModelStateRow.version,
)

# The audit trail in the app log; payloads are already redacted when they get here.
audit_log = logging.getLogger("dxg.audit")
log = logging.getLogger(__name__)


# How often ``append_retrying`` re-reads and tries again; each conflict means another writer
# succeeded, so running out means the stream is written faster than we can read it.
APPEND_ATTEMPTS: Final = 50

# decide(current version) -> the events to append then ([] when nothing is to be done).
Decision = Callable[[int], Sequence[Event]]


class ConcurrencyConflict(Exception):
    """The stream moved on since the caller read it; re-read its version and retry."""

    def __init__(self, stream: str, expected: int, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        found = "a newer version" if actual is None else f"version {actual}"
        super().__init__(
            f"concurrency conflict on stream {stream!r}: expected version {expected}, "
            f"found {found}; another writer appended first, re-read the stream and retry"
        )


class AppendGaveUp(RuntimeError):
    """``append_retrying`` lost the race ``APPEND_ATTEMPTS`` times in a row."""


def _recorded(row: Row[Any]) -> RecordedEvent:
    position, stream, version, type_name, payload, actor, ts = row
    return RecordedEvent(position, stream, version, from_record(type_name, payload), actor, ts)


def _state(row: Row[Any]) -> ModelState:
    model_id, desired, phase, since, handle, restarts, last_error, version = row
    return ModelState(
        model_id=model_id,
        desired=cast(Desired, desired),
        phase=Phase(phase),
        since=since,
        handle=handle,
        restarts=restarts,
        last_error=last_error,
        version=version,
    )


def _state_values(state: ModelState) -> dict[str, Any]:
    return {
        "model_id": state.model_id,
        "desired": state.desired,
        "phase": state.phase.value,
        "since": state.since,
        "handle": state.handle,
        "restarts": state.restarts,
        "last_error": state.last_error,
        "version": state.version,
    }


def _now_ms() -> float:
    return round(time.time(), 3)


class EventStore:
    """Appends and reads events; keeps ``model_state`` equal to the fold of each model stream."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = _now_ms) -> None:
        self._engine = engine
        self._clock = clock
        # Why the last append failed to write (None: it succeeded, or none failed yet).
        self.write_error: str | None = None

    @property
    def engine(self) -> Engine:
        return self._engine

    # --- writing -------------------------------------------------------------------

    def append(
        self, stream: str, events: Sequence[Event], expected_version: int, actor: str
    ) -> list[RecordedEvent]:
        """Append ``events`` after ``expected_version`` atomically; return them as stored (redacted)."""
        check_stream(stream)
        if not events:
            raise ValueError("append needs at least one event")
        if expected_version < 0:
            raise ValueError(f"expected_version must be >= 0, got {expected_version}")
        if not actor or len(actor) > ACTOR_MAX:
            raise ValueError(f"actor must be 1-{ACTOR_MAX} characters, got {actor!r}")
        # Secrets are stripped before anything touches the database.
        records = [(type_name, redact(payload)) for type_name, payload in map(to_record, events)]
        ts = round(self._clock(), 3)
        rows = [
            {
                "stream": stream,
                "version": expected_version + i,
                "type": t,
                "payload": p,
                "actor": actor,
                "ts": ts,
            }
            for i, (t, p) in enumerate(records, start=1)
        ]
        try:
            stored = self._append_rows(stream, rows, expected_version, actor)
        except OperationalError as exc:
            # Disk full, a read-only file, an I/O error: say so plainly, and remember it until a
            # write succeeds again (health and the UI show it meanwhile).
            failure = StoreUnwritable(self._where(), str(exc.orig) if exc.orig is not None else str(exc))
            self.write_error = str(failure)
            log.error("%s", failure)
            raise failure from exc
        self.write_error = None
        for recorded in stored:
            level = logging.WARNING if recorded.type in FAILURE_TYPES else logging.INFO
            audit_log.log(level, audit_line(recorded))
        return stored

    def _where(self) -> str:
        return self._engine.url.render_as_string(hide_password=True).removeprefix("sqlite:///")

    def _append_rows(
        self, stream: str, rows: list[dict[str, Any]], expected_version: int, actor: str
    ) -> list[RecordedEvent]:
        with self._engine.begin() as conn:  # BEGIN IMMEDIATE: we hold the write lock from here
            actual = self._version(conn, stream)
            if actual != expected_version:
                raise ConcurrencyConflict(stream, expected_version, actual)
            try:
                positions = (
                    conn.execute(
                        insert(EventRow).returning(EventRow.position, sort_by_parameter_order=True), rows
                    )
                    .scalars()
                    .all()
                )
            except IntegrityError as exc:
                # Only a writer bypassing BEGIN IMMEDIATE can get here; the unique key still holds.
                raise ConcurrencyConflict(stream, expected_version, None) from exc
            stored = [
                RecordedEvent(
                    pos, stream, row["version"], from_record(row["type"], row["payload"]), actor, row["ts"]
                )
                for pos, row in zip(positions, rows, strict=True)
            ]
            model_id = model_id_of(stream)
            if model_id is not None:
                self._project(conn, model_id, expected_version, stored)
        return stored

    def append_retrying(
        self, stream: str, decide: Decision, actor: str, *, attempts: int = APPEND_ATTEMPTS
    ) -> list[RecordedEvent]:
        """Read the stream's version, ask ``decide`` what to append at it, and append; on a
        conflict read and decide again. The one retry rule for every writer.

        ``decide`` may look at the current state and return ``[]`` (nothing to do: an
        idempotent command that is already satisfied) or raise to refuse. Returns what was
        stored; raises ``AppendGaveUp``, logged, when the stream never stands still.
        """
        events: Sequence[Event] = []
        for _ in range(attempts):
            version = self.current_version(stream)
            events = decide(version)
            if not events:
                return []
            try:
                return self.append(stream, events, version, actor)
            except ConcurrencyConflict:
                continue
        types = [e.type for e in events]
        log.error("gave up appending %s to %s after %d conflicts", types, stream, attempts)
        raise AppendGaveUp(f"could not record {types} on {stream}: it kept moving ({attempts} conflicts)")

    def _project(
        self, conn: Connection, model_id: str, expected_version: int, stored: Iterable[RecordedEvent]
    ) -> None:
        row = self._load_state(conn, model_id)
        if (row.version if row else 0) == expected_version:
            after = advance(row, stored)  # raises IllegalTransition: the transaction rolls back
        else:
            # The row lags its stream (restored backup, manual edit): heal it from the whole
            # stream, which in this transaction already holds the new events.
            after = fold(self._read_stream(conn, model_stream(model_id), 0))
        if after is None:  # append refuses empty batches, so this never happens
            return
        values = _state_values(after)
        if row is None:
            conn.execute(insert(ModelStateRow), [values])
        else:
            conn.execute(update(ModelStateRow).where(ModelStateRow.model_id == model_id).values(values))

    def rebuild_projection(self) -> int:
        """Recompute every ``model_state`` row from the events in one transaction; return the row count.

        A repair tool, not a routine: it holds the write lock while it folds every model
        event (about 15 s per million events), and appends wait for it up to the busy timeout.
        """
        with self._engine.begin() as conn:
            states: dict[str, ModelState] = {}
            result = conn.execution_options(yield_per=_REBUILD_BATCH).execute(
                select(*_EVENT_COLUMNS)
                .where(EventRow.stream > MODEL_STREAM_PREFIX, EventRow.stream < _MODEL_STREAMS_END)
                .order_by(EventRow.stream, EventRow.version)
            )
            for row in result:
                recorded = _recorded(row)
                model_id = recorded.stream[len(MODEL_STREAM_PREFIX) :]
                states[model_id] = apply(states.get(model_id), recorded)
            conn.execute(delete(ModelStateRow))
            if states:
                conn.execute(insert(ModelStateRow), [_state_values(s) for s in states.values()])
        return len(states)

    # --- reading -------------------------------------------------------------------

    def current_version(self, stream: str) -> int:
        """The version of the stream's last event; 0 for an empty stream."""
        with read_connection(self._engine) as conn:
            return self._version(conn, check_stream(stream))

    def read_stream(self, stream: str, after_version: int = 0) -> list[RecordedEvent]:
        with read_connection(self._engine) as conn:
            return self._read_stream(conn, check_stream(stream), after_version)

    def read_all(
        self, after_position: int = 0, limit: int | None = None, stream: str | None = None
    ) -> list[RecordedEvent]:
        """Events in global order after ``after_position``, optionally for one stream only."""
        query = select(*_EVENT_COLUMNS).where(EventRow.position > after_position).order_by(EventRow.position)
        if stream is not None:
            query = query.where(EventRow.stream == check_stream(stream))
        if limit is not None:
            query = query.limit(limit)
        with read_connection(self._engine) as conn:
            return [_recorded(row) for row in conn.execute(query)]

    def recent_events(self, stream: str | None = None, limit: int = 50) -> list[RecordedEvent]:
        """The last ``limit`` events, newest first, of one stream or of all streams."""
        query = select(*_EVENT_COLUMNS).order_by(EventRow.position.desc()).limit(limit)
        if stream is not None:
            query = query.where(EventRow.stream == check_stream(stream))
        with read_connection(self._engine) as conn:
            return [_recorded(row) for row in conn.execute(query)]

    def model_states(self) -> dict[str, ModelState]:
        """Every model's state, by model id; one query over the projection, whatever the event count."""
        with read_connection(self._engine) as conn:
            rows = conn.execute(select(*_STATE_COLUMNS).order_by(ModelStateRow.model_id))
            return {row.model_id: _state(row) for row in rows}

    def model_state(self, model_id: str) -> ModelState | None:
        with read_connection(self._engine) as conn:
            return self._load_state(conn, check_model_id(model_id))

    # --- helpers on an open connection ---------------------------------------------

    @staticmethod
    def _version(conn: Connection, stream: str) -> int:
        version = conn.execute(select(func.max(EventRow.version)).where(EventRow.stream == stream)).scalar()
        return int(version or 0)

    @staticmethod
    def _read_stream(conn: Connection, stream: str, after_version: int) -> list[RecordedEvent]:
        query = (
            select(*_EVENT_COLUMNS)
            .where(EventRow.stream == stream, EventRow.version > after_version)
            .order_by(EventRow.version)
        )
        return [_recorded(row) for row in conn.execute(query)]

    @staticmethod
    def _load_state(conn: Connection, model_id: str) -> ModelState | None:
        row = conn.execute(select(*_STATE_COLUMNS).where(ModelStateRow.model_id == model_id)).one_or_none()
        return None if row is None else _state(row)
