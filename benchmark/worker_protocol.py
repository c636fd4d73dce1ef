"""What the app and a benchmark's own process say to each other: JSON lines over pipes.

The app writes one line, the run's spec, then ``cancel`` if the user (or the app's exit) stops
the run; closing the pipe means the same. The process answers with one JSON object per line:
``{"progress": {...}}`` as requests finish, ``{"audit": {...}}`` for each event bound for the
model's audit stream (the app is that stream's writer), and ``{"done": {...}}`` last.

The spec carries the server's API key, which is why it goes through a pipe: never a command
line or an environment that ``ps`` or a crash report could show.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Final

from benchmark.runner import Progress
from benchmark.transport import Target
from benchmark.workload import WORKLOADS, Workload
from lifecycle.core.events import BenchmarkFinished, BenchmarkStarted, from_record, to_record

CANCEL: Final = "cancel"


class ProtocolError(ValueError):
    pass


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    db_url: str
    target: Target
    workload: Workload
    server_meta: dict[str, Any]
    catalog_entry: dict[str, Any] | None = None


def encode_spec(spec: RunSpec) -> str:
    return json.dumps(
        {
            "run_id": spec.run_id,
            "db_url": spec.db_url,
            "target": asdict(spec.target),
            "workload": spec.workload.model_dump(mode="json"),
            "server_meta": spec.server_meta,
            "catalog_entry": spec.catalog_entry,
        }
    )


def decode_spec(line: str) -> RunSpec:
    try:
        raw = json.loads(line)
        workload = WORKLOADS[raw["workload"]["kind"]].model_validate(raw["workload"])
        return RunSpec(
            run_id=str(raw["run_id"]),
            db_url=str(raw["db_url"]),
            target=Target(**raw["target"]),
            workload=workload,
            server_meta=dict(raw["server_meta"]),
            catalog_entry=raw.get("catalog_entry"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"not a benchmark run spec: {exc}") from None


def progress_view(update: Progress) -> dict[str, Any]:
    """A level's progress as the page and the API show it."""
    eta, ttft, rate = update.eta_s, update.last_ttft_ms, update.output_tokens_per_s
    return {
        **asdict(update),
        "elapsed_s": round(update.elapsed_s, 3),
        "eta_s": round(eta, 1) if eta is not None else None,
        "last_ttft_ms": round(ttft, 2) if ttft is not None else None,
        "output_tokens_per_s": round(rate, 1) if rate is not None else None,
    }


def audit_message(model_id: str, event: BenchmarkStarted | BenchmarkFinished) -> dict[str, Any]:
    type_name, payload = to_record(event)
    return {"audit": {"model_id": model_id, "type": type_name, "payload": payload}}


def audit_event(body: dict[str, Any]) -> tuple[str, BenchmarkStarted | BenchmarkFinished]:
    """The model and the event of an ``audit`` message; only benchmark events are accepted."""
    event = from_record(str(body.get("type")), body.get("payload"))
    if not isinstance(event, BenchmarkStarted | BenchmarkFinished):
        raise ProtocolError(f"a benchmark process may not record {body.get('type')!r}")
    return str(body.get("model_id")), event


def decode_message(line: str) -> tuple[str, dict[str, Any]]:
    """``(kind, body)`` of one line from the process: progress, audit or done."""
    try:
        message = json.loads(line)
    except ValueError:
        raise ProtocolError(f"not JSON: {line[:200]!r}") from None
    if not isinstance(message, dict) or len(message) != 1:
        raise ProtocolError(f"not a message: {line[:200]!r}")
    ((kind, body),) = message.items()
    if kind not in ("progress", "audit", "done") or not isinstance(body, dict):
        raise ProtocolError(f"unknown message {kind!r}")
    return kind, body
