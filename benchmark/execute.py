"""One benchmark run from start to stored result: the code the CLI and the page both call.

It records the run before the first request (so a crash leaves a trace), saves
each level's requests as soon as the level ends (so a cut-short run keeps what
it measured), computes the figures from the stored timelines, and puts
BenchmarkStarted / BenchmarkFinished into the model's audit stream.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from benchmark.host import host_facts
from benchmark.loop_health import CancelToken
from benchmark.metrics import run_summary, runner_health
from benchmark.prompts import Messages
from benchmark.records import RequestRecord, RunRecord, RunStatus
from benchmark.runner import TEXT_KEPT, ProgressFn, RunOutcome, run_blocking, run_depth, run_sweep
from benchmark.server_info import tokenize_count
from benchmark.transport import Target
from benchmark.workload import DepthWorkload, SweepWorkload, Workload
from lifecycle.core.events import BenchmarkFinished, BenchmarkStarted

log = logging.getLogger(__name__)


class RunStore(Protocol):
    def create(self, run: RunRecord) -> None: ...
    def add_requests(self, run_id: str, records: Sequence[RequestRecord]) -> None: ...
    def finish(
        self,
        run_id: str,
        status: str,
        ended_at: float,
        error: str | None,
        health: list[dict[str, Any]],
        results: dict[str, Any],
    ) -> None: ...


class AuditSink(Protocol):
    """The lifecycle service's door for benchmark events (``LifecycleService.record_benchmark``)."""

    def record_benchmark(
        self, model_id: str, event: BenchmarkStarted | BenchmarkFinished, actor: str = ...
    ) -> None: ...


@dataclass(frozen=True)
class Job:
    target: Target
    workload: Workload
    server_meta: dict[str, Any]
    catalog_entry: dict[str, Any] | None = None
    conversations: list[Messages] | None = None  # a sweep's prompt file, already read


def new_run(job: Job) -> RunRecord:
    target = job.target
    return RunRecord(
        run_id=uuid.uuid4().hex[:12],
        kind=job.workload.kind,
        base_url=target.base_url,
        workload=job.workload.model_dump(mode="json"),
        started_at=round(time.time(), 3),
        model_id=target.model_id,
        engine=target.engine,
        served_model=target.served_model,
        catalog_entry=job.catalog_entry,
        server_meta=job.server_meta,
        host=host_facts(),
    )


def record_audit(
    audit: AuditSink | None, model_id: str | None, event: BenchmarkStarted | BenchmarkFinished
) -> None:
    if audit is None or model_id is None:
        return
    try:
        audit.record_benchmark(model_id, event)
    except Exception:  # the measurement matters more than its audit line; say so and go on
        log.warning("could not record %s for %s in the audit history", event.TYPE, model_id, exc_info=True)


def execute(
    job: Job,
    store: RunStore,
    audit: AuditSink | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    run: RunRecord | None = None,
) -> RunRecord:
    run = run or new_run(job)
    store.create(run)
    record_audit(
        audit,
        run.model_id,
        BenchmarkStarted(run_id=run.run_id, kind=run.kind, workload=job.workload.summary()),
    )
    health: list[dict[str, Any]] = []
    saved: set[int] = set()

    def level_done(level: int, records: list[RequestRecord], samples: dict[str, list[float]]) -> None:
        health.append(
            {**runner_health(samples["lag_ms"], samples["slip_ms"]), "cpu_share": samples["cpu_share"][0]}
        )
        store.add_requests(run.run_id, records)
        saved.update(id(r) for r in records)

    try:
        outcome = run_blocking(_start(job, cancel, progress, level_done))
    except Exception as exc:  # a bug or an unexpected failure: keep the run, say what happened
        log.exception("benchmark run %s failed", run.run_id)
        outcome = RunOutcome(cut_short=f"the runner failed: {exc!r}")
    _save_unsaved(store, run, [r for r in outcome.records if id(r) not in saved])
    run.requests = outcome.records
    run.health = health
    run.results = summarise(run, job, outcome)
    run.status, run.error = verdict(run, outcome)
    run.ended_at = round(time.time(), 3)
    store.finish(run.run_id, run.status, run.ended_at, run.error, run.health, run.results)
    record_audit(
        audit, run.model_id, BenchmarkFinished(run_id=run.run_id, status=run.status, summary=headline(run))
    )
    return run


async def _start(
    job: Job, cancel: CancelToken | None, progress: ProgressFn | None, level_done: Any
) -> RunOutcome:
    if isinstance(job.workload, DepthWorkload):
        return await run_depth(
            job.target, job.workload, cancel=cancel, progress=progress, level_done=level_done
        )
    assert isinstance(job.workload, SweepWorkload)
    return await run_sweep(
        job.target,
        job.workload,
        cancel=cancel,
        progress=progress,
        level_done=level_done,
        conversations=job.conversations,
    )


def _save_unsaved(store: RunStore, run: RunRecord, extra: list[RequestRecord]) -> None:
    """Probe and calibration requests belong to no level's save, and a level cut off by a
    failure never reached its own: keep them too."""
    if extra:
        try:
            store.add_requests(run.run_id, extra)
        except Exception:
            log.warning("could not save the probe requests of run %s", run.run_id, exc_info=True)


def _fill_cached_from_timings(records: Sequence[RequestRecord]) -> None:
    # llama.cpp reports reused prompt tokens in its timings, not in usage.
    for record in records:
        if record.cached_tokens is None and record.server_timings:
            cache_n = record.server_timings.get("cache_n")
            if isinstance(cache_n, int):
                record.cached_tokens = cache_n


def _tokenize_totals(job: Job, records: Sequence[RequestRecord]) -> dict[int, int] | None:
    """Per level, the server's /tokenize count of every successful reply; None where it has none."""
    by_level: dict[int, list[RequestRecord]] = defaultdict(list)
    for record in records:
        if record.ok and not record.warmup:
            by_level[record.level].append(record)
    totals: dict[int, int] = {}
    for level, group in by_level.items():
        if len(group) > TEXT_KEPT or not all(r.text for r in group):
            continue
        counts = [tokenize_count(job.target, r.text, job.target.engine) for r in group]
        if any(c is None for c in counts):
            return totals or None
        totals[level] = sum(c for c in counts if c is not None)
    return totals or None


def summarise(run: RunRecord, job: Job, outcome: RunOutcome) -> dict[str, Any]:
    records = [r for r in outcome.records if r.error_class != "Cancelled"]
    _fill_cached_from_timings(records)
    counted = RunRecord(**{**run.__dict__, "requests": records})
    floor = outcome.latency_floor_ns or 0
    # A cancelled or cut-short run is saved at once (the app may be exiting): no /tokenize round.
    stopped_early = outcome.cancelled or outcome.cut_short is not None
    tokenized = None if stopped_early else _tokenize_totals(job, records)
    summary = run_summary(counted, latency_floor_ns=floor, tokenize_tokens=tokenized)
    calibration = outcome.calibration
    summary.update(
        latency_floor_ns=outcome.latency_floor_ns,
        calibration={
            "tokens_per_word": round(calibration.per_word, 4),
            "overhead_tokens": round(calibration.overhead, 2),
            # (words, server tokens) it was fitted from; fewer than two means the default was used.
            "samples": [list(sample) for sample in outcome.samples],
        },
        length_controls_sent=outcome.length_controls,
        cancelled_requests=len(outcome.records) - len(records),
    )
    return summary


def verdict(run: RunRecord, outcome: RunOutcome) -> tuple[str, str | None]:
    entries = run.results.get("levels") or run.results.get("cells") or []
    if outcome.cancelled:  # whatever it had measured by then, it is what the user stopped
        return RunStatus.PARTIAL, "cancelled"
    if not any(entry.get("completed") for entry in entries):
        reason = outcome.cut_short or _first_error(outcome.records) or "no request completed"
        return RunStatus.FAILED, reason
    if outcome.cut_short:
        return RunStatus.PARTIAL, outcome.cut_short
    invalid = [entry for entry in entries if entry.get("valid") is False]
    if invalid:
        return RunStatus.INVALID, "; ".join(str(entry.get("invalid_reason")) for entry in invalid)
    return RunStatus.COMPLETE, None


def _first_error(records: Sequence[RequestRecord]) -> str | None:
    return next((r.error for r in records if r.error), None)


def headline(run: RunRecord) -> str:
    """One line for the audit history, e.g. "3 levels, 192 requests, 0 errors"."""
    entries = run.results.get("levels") or run.results.get("cells") or []
    done = sum(entry.get("completed") or 0 for entry in entries)
    errors = sum(entry.get("errors") or 0 for entry in entries)
    noun = "levels" if run.kind == "sweep" else "cells"
    return f"{len(entries)} {noun}, {done} requests completed, {errors} errors"
