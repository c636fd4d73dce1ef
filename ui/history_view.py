"""The audit table: recorded events as rows a person reads, filters and exports.

Pure: ``RecordedEvent`` in, rows and CSV text out.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from lifecycle.core.events import APP_STREAM, RecordedEvent, model_id_of, redact
from ui.format import duration, local_time

# Payload keys too long or too internal for a table cell (the log tail has its own page).
_HIDDEN: Final = frozenset({"log_tail", "handle", "at"})
_FORMULA_START: Final = ("=", "+", "-", "@")


def _plain(key: str) -> Callable[[Any], str]:
    return lambda value: f"{key} {value}"


# How each known payload key reads; any other key shows as "key: value".
_FORMATS: Final[Mapping[str, Callable[[Any], str]]] = {
    "reason": lambda v: f"reason: {v}",
    "exit_code": _plain("exit code"),
    "load_duration_s": lambda v: f"took {duration(v)}",
    "oom": lambda v: "out of memory" if v else "",
    "delay_s": lambda v: f"in {duration(v, digits=1)}",
    "attempt": _plain("attempt"),
    "crashes": lambda v: f"after {v} crashes",
    "ready": lambda v: "was ready" if v else "was starting",
    "instance": _plain("instance"),
    "pid": _plain("pid"),
    # Benchmark runs: which run (python -m benchmark show RUN), what it measured, how it ended.
    "run_id": _plain("run"),
    "kind": lambda v: str(v),
    "workload": lambda v: str(v),
    "status": _plain("status"),
    "summary": lambda v: str(v),
}


@dataclass(frozen=True)
class EventRow:
    position: int
    time: str
    model: str  # the model id, or "app" for the app's own events
    event: str
    actor: str
    details: str


COLUMNS: Final = tuple(f.name for f in fields(EventRow))


def details(payload: Mapping[str, Any]) -> str:
    """``exit code 1, out of memory``: the facts of one event, in a short line; secrets hidden."""
    parts = []
    for key, value in redact(dict(payload)).items():
        if key in _HIDDEN or value is None or value == "":
            continue
        text = _FORMATS.get(key, lambda v, k=key: f"{k}: {v}")(value)
        if text:
            parts.append(text)
    return ", ".join(parts)


def event_row(recorded: RecordedEvent) -> EventRow:
    return EventRow(
        position=recorded.position,
        time=local_time(recorded.ts),
        model=model_id_of(recorded.stream) or APP_STREAM,
        event=recorded.type,
        actor=recorded.actor,
        details=details(recorded.event.payload()),
    )


def event_rows(events: Iterable[RecordedEvent]) -> list[EventRow]:
    """Newest first, whatever order the events came in."""
    return sorted((event_row(e) for e in events), key=lambda row: row.position, reverse=True)


def filter_rows(
    rows: Iterable[EventRow], models: Collection[str] = (), events: Collection[str] = ()
) -> list[EventRow]:
    """Rows of the chosen models and event types; an empty choice means all."""
    return [
        row for row in rows if (not models or row.model in models) and (not events or row.event in events)
    ]


def to_records(rows: Iterable[EventRow]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]


def _inert(value: Any) -> Any:
    # An actor or reason comes from API callers and catalog files; a spreadsheet would run
    # "=..." as a formula, so such cells are quoted as text.
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(rows: Iterable[EventRow]) -> str:
    """The table as CSV with a header row, in the order shown."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _inert(v) for k, v in record.items()} for record in to_records(rows))
    return out.getvalue()
