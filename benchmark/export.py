"""A stored run as files to take elsewhere: JSON with everything, CSV with one row per request.

The JSON keeps every frame, so another tool (or a later version of ours) can recompute any
figure; the CSV is for a spreadsheet. Neither carries the request text: it is never stored.
Latencies follow benchmark.metrics: TTFR = response headers, TTFT = first frame on any token
channel, TTFA = first answer frame, E2E = end of stream, all from the moment of sending.
"""

from __future__ import annotations

import csv
import io
from dataclasses import fields
from typing import Any, Final

from benchmark.records import OUTCOME_FIELDS, RequestRecord, RunRecord

EXPORT_FORMAT: Final = "dxg-benchmark-run"
EXPORT_VERSION: Final = 1
_NS_PER_MS: Final = 1_000_000

CSV_COLUMNS: Final = (
    "ordinal",
    "level",
    "seq",
    "warmup",
    "intended_ms",
    "sent_ms",
    "ttfr_ms",
    "ttft_ms",
    "ttfa_ms",
    "e2e_ms",
    "frames",
    *OUTCOME_FIELDS,
)
_NOT_EXPORTED: Final = frozenset({"text", "requests"})


def request_to_json(record: RequestRecord) -> dict[str, Any]:
    """Every stored field of the request, its frames as three plain lists of ints."""
    out = {f.name: getattr(record, f.name) for f in fields(record) if f.name not in _NOT_EXPORTED}
    # Channel values may be IntEnum members in memory; plain ints read the same everywhere.
    out["frame_ns"] = [int(t) for t in record.frame_ns]
    out["frame_bytes"] = [int(b) for b in record.frame_bytes]
    out["frame_channel"] = [int(c) for c in record.frame_channel]
    return out


def run_to_json(run: RunRecord) -> dict[str, Any]:
    """The run's metadata, workload, health, results and every request, ready for ``json.dump``."""
    out: dict[str, Any] = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION}
    out.update({f.name: getattr(run, f.name) for f in fields(run) if f.name not in _NOT_EXPORTED})
    out["requests"] = [request_to_json(r) for r in run.requests]
    return out


def _ms(ns: int | None) -> str:
    # Microsecond resolution in the sheet; the JSON export keeps the nanoseconds.
    return "" if ns is None else f"{ns / _NS_PER_MS:.3f}"


def _first(frames: list[int]) -> int | None:
    return min(frames) if frames else None


def _cell(value: int | str | None) -> str:
    return "" if value is None else str(value)


def request_row(ordinal: int, record: RequestRecord) -> dict[str, str]:
    return {
        "ordinal": str(ordinal),
        "level": str(record.level),
        "seq": str(record.seq),
        "warmup": "1" if record.warmup else "0",
        "intended_ms": _ms(record.intended_ns),
        "sent_ms": _ms(record.sent_ns),
        "ttfr_ms": _ms(record.frame_ns[0] if record.frame_ns else None),
        "ttft_ms": _ms(_first(record.token_frames())),
        "ttfa_ms": _ms(_first(record.content_frames())),
        "e2e_ms": _ms(record.end_ns),
        "frames": str(len(record.frame_ns)),
        **{name: _cell(getattr(record, name)) for name in OUTCOME_FIELDS},
    }


def run_to_csv(run: RunRecord) -> str:
    """One row per request in stored order; empty cells where the request has no such figure."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(request_row(i, r) for i, r in enumerate(run.requests))
    return buffer.getvalue()
