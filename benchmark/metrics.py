"""The benchmark's figures, computed from stored request timelines and nothing else.

Everything here is a pure function of ``RequestRecord``s, so a run's results can be recomputed
(or recomputed differently) long after it ran. Definitions follow DESIGN.md "Benchmark facts":

- TTFR: first byte (response headers). TTFT: first frame on any token channel (answer or
  reasoning). TTFA: first answer frame. Role-only / finish / usage frames are never tokens.
- Output tokens: the server's ``usage.completion_tokens``; only without it the number of token
  frames, flagged, because a chunk is not a token.
- ITL = (E2E - TTFT) / (output tokens - 1) (AIPerf); per-user tokens/s = 1 / ITL.
- Level throughputs divide by the window from the first send to the last completion.

Warm-up requests are excluded from every figure. Requests never sent (a cancelled run) are
counted apart: they were never attempted, so they are neither successes nor failures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypedDict

from benchmark.records import Channel, RequestRecord, RunRecord
from benchmark.stats import DEFAULT_SEED, Distribution, describe, percentile

NS_PER_MS: Final = 1_000_000
NS_PER_S: Final = 1_000_000_000
RECONCILE_TOLERANCE: Final = 0.05  # a relative gap above this between token counts is flagged
LAG_P99_LIMIT_MS: Final = 5.0  # client event-loop lag beyond this inflates every latency
SLIP_P99_LIMIT_MS: Final = 10.0  # requests leaving this late means the offered load was not met


# --- per request -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestMetrics:
    """One request's figures, in ns as recorded. None where the timeline cannot say."""

    ok: bool
    ttfr_ns: int | None
    ttft_ns: int | None
    ttfa_ns: int | None
    e2e_ns: int | None
    output_tokens: int
    tokens_from_usage: bool  # False: counted from frames, a lower bound when chunks carry several
    itl_ns: float | None

    @property
    def tokens_per_s(self) -> float | None:
        """Per-user output speed: 1 / ITL."""
        return NS_PER_S / self.itl_ns if self.itl_ns else None


def validity(health: Mapping[str, Any] | None) -> dict[str, Any]:
    """A level's verdict on the runner's own health, as every summary opens with it."""
    if not health:
        return {"valid": True, "invalid_reason": None}
    return {"valid": bool(health.get("valid", True)), "invalid_reason": health.get("reason")}


def first_response_ns(record: RequestRecord) -> int | None:
    """TTFR: the first frame of the reply, whatever it carries (llama-benchy's "time to first
    response"). Not the headers: servers send those on arrival, before any work is done."""
    return record.frame_ns[0] if record.frame_ns else None


def token_frame_count(record: RequestRecord) -> int:
    """Frames that carried text on either channel (as ``RequestRecord.token_frames``)."""
    return sum(1 for c in record.frame_channel if c != Channel.NONE)


def ttft_ns(record: RequestRecord) -> int | None:
    """First frame carrying text on any channel; reasoning counts, a role-only frame does not."""
    frames = record.token_frames()
    return min(frames) if frames else None


def ttfa_ns(record: RequestRecord) -> int | None:
    """First answer frame: what a user of a reasoning model waits for before seeing an answer."""
    frames = record.content_frames()
    return min(frames) if frames else None


def output_tokens(record: RequestRecord) -> tuple[int, bool]:
    """(count, from usage?). Without usage the frame count stands in, and the False says so."""
    if record.completion_tokens is not None:
        return record.completion_tokens, True
    return token_frame_count(record), False


def itl_ns(record: RequestRecord) -> float | None:
    """AIPerf's ITL, (E2E - TTFT) / (tokens - 1); undefined below two tokens."""
    first, tokens = ttft_ns(record), output_tokens(record)[0]
    if first is None or record.end_ns is None or tokens < 2:
        return None
    return (record.end_ns - first) / (tokens - 1)


def request_metrics(record: RequestRecord) -> RequestMetrics:
    tokens, from_usage = output_tokens(record)
    return RequestMetrics(
        ok=record.ok,
        ttfr_ns=first_response_ns(record),
        ttft_ns=ttft_ns(record),
        ttfa_ns=ttfa_ns(record),
        e2e_ns=record.end_ns,
        output_tokens=tokens,
        tokens_from_usage=from_usage,
        itl_ns=itl_ns(record),
    )


def measured(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    """The requests that count: not warm-ups, and actually sent."""
    return [r for r in records if not r.warmup and r.sent_ns is not None]


def send_slip_ms(records: Iterable[RequestRecord]) -> list[float]:
    """How late each request left against its schedule, recomputed from the stored timeline."""
    return [(r.sent_ns - r.intended_ns) / NS_PER_MS for r in records if r.sent_ns is not None]


# --- user limits and goodput -------------------------------------------------------------------


@dataclass(frozen=True)
class UserLimits:
    """What a user will accept; None means no limit on that figure."""

    ttft_ms: float | None = None
    itl_ms: float | None = None

    @classmethod
    def coerce(cls, limits: UserLimits | Mapping[str, float | None] | None) -> UserLimits | None:
        """A limits object, or None when no limit is set (then there is no goodput to report)."""
        if limits is not None and not isinstance(limits, UserLimits):
            limits = cls(ttft_ms=limits.get("ttft_ms"), itl_ms=limits.get("itl_ms"))
        if limits is None or (limits.ttft_ms is None and limits.itl_ms is None):
            return None
        return limits

    def met_by(self, m: RequestMetrics) -> bool:
        """A failure never meets a limit; nor does a figure that cannot be measured (e.g. the ITL
        of a one-token answer), because goodput must not be flattered by what it cannot see."""
        if not m.ok:
            return False
        if self.ttft_ms is not None and (m.ttft_ns is None or m.ttft_ns > self.ttft_ms * NS_PER_MS):
            return False
        return not (self.itl_ms is not None and (m.itl_ns is None or m.itl_ns > self.itl_ms * NS_PER_MS))


# --- token reconciliation ----------------------------------------------------------------------


class Reconciliation(TypedDict):
    """Token totals over a level's successful requests, by each way of counting them."""

    usage_tokens: int | None  # sum of usage.completion_tokens over requests that sent usage
    frame_tokens: int  # token frames over the same requests (all successes when none sent usage)
    tokenize_tokens: int | None  # from /tokenize, when the caller counted
    requests_without_usage: int
    max_gap: float | None  # largest relative gap against the reference count
    flagged: bool
    reason: str | None


def reconcile_tokens(
    records: Iterable[RequestRecord],
    tokenize_tokens: int | None = None,
    *,
    tolerance: float = RECONCILE_TOLERANCE,
) -> Reconciliation:
    """Compare the usage total with the frame count (and /tokenize's count, when given).

    Usage is the reference when present, else /tokenize. ``tokenize_tokens`` must cover the same
    successful, non-warm-up requests. A gap between usage and frames is not an error in itself
    (servers batch tokens into chunks) but it shows how wrong a chunk-counting tool would be.
    """
    done = [r for r in measured(records) if r.ok]
    with_usage = [r for r in done if r.completion_tokens is not None]
    usage = sum(r.completion_tokens or 0 for r in with_usage) if with_usage else None
    frames = sum(token_frame_count(r) for r in (with_usage or done))
    counts: dict[str, int | None] = {"token frames": frames, "/tokenize": tokenize_tokens}
    reference_name, reference = ("usage", usage) if usage is not None else ("/tokenize", tokenize_tokens)
    gaps: list[tuple[float, str]] = []
    if reference:
        for name, count in counts.items():
            if name == reference_name or count is None:
                continue
            gap = abs(count - reference) / reference
            gaps.append(
                (
                    gap,
                    f"{reference_name} says {reference:,} tokens, {name} {count:,} ({gap:.0%} gap)",
                )
            )
    worst = max(gaps, default=None)
    flagged = worst is not None and worst[0] > tolerance
    return Reconciliation(
        usage_tokens=usage,
        frame_tokens=frames,
        tokenize_tokens=tokenize_tokens,
        requests_without_usage=len(done) - len(with_usage),
        max_gap=worst[0] if worst else None,
        flagged=flagged,
        reason="; ".join(text for gap, text in gaps if gap > tolerance) if flagged else None,
    )


class LengthHonoured(TypedDict):
    n: int  # requests that asked for a length and reported usage
    fraction: float | None  # share whose completion_tokens equals the requested output tokens


def output_length_honoured(records: Iterable[RequestRecord]) -> LengthHonoured:
    """Did the server produce the asked-for length (ignore_eos / min_tokens respected)?

    Only requests with a requested length and a usage count are judged: frames cannot say.
    """
    judged = [
        r
        for r in measured(records)
        if r.ok and r.requested_output_tokens is not None and r.completion_tokens is not None
    ]
    if not judged:
        return LengthHonoured(n=0, fraction=None)
    hits = sum(1 for r in judged if r.completion_tokens == r.requested_output_tokens)
    return LengthHonoured(n=len(judged), fraction=hits / len(judged))


# --- the runner's own health -------------------------------------------------------------------


class Health(TypedDict):
    """Shape of ``RunRecord.health`` entries."""

    lag_p99_ms: float | None
    slip_p99_ms: float | None
    valid: bool
    reason: str | None


def runner_health(
    lag_ms: Sequence[float],
    slip_ms: Sequence[float],
    *,
    lag_limit_ms: float = LAG_P99_LIMIT_MS,
    slip_limit_ms: float = SLIP_P99_LIMIT_MS,
) -> Health:
    """Was the client itself the bottleneck? A saturated event loop inflates latency silently,
    and late sends mean the load asked for was never offered, so either voids the level."""
    lag, slip = percentile(lag_ms, 99.0), percentile(slip_ms, 99.0)
    reasons = []
    if lag is not None and lag > lag_limit_ms:
        reasons.append(f"client event-loop lag p99 {lag:.1f} ms > {lag_limit_ms:g} ms")
    if slip is not None and slip > slip_limit_ms:
        reasons.append(f"send slip p99 {slip:.1f} ms > {slip_limit_ms:g} ms")
    return Health(lag_p99_ms=lag, slip_p99_ms=slip, valid=not reasons, reason="; ".join(reasons) or None)


# --- a level -----------------------------------------------------------------------------------


def _ms(values: Iterable[float | None]) -> list[float]:
    return [v / NS_PER_MS for v in values if v is not None]


def _window_ns(records: Sequence[RequestRecord]) -> int | None:
    """First send to last completion (send + end) over the measured requests."""
    sends = [r.sent_ns for r in records if r.sent_ns is not None]
    ends = [r.sent_ns + r.end_ns for r in records if r.sent_ns is not None and r.end_ns is not None]
    if not sends or not ends:
        return None
    window = max(ends) - min(sends)
    return window if window > 0 else None


def _per_s(count: float, window_ns: int | None) -> float | None:
    return count * NS_PER_S / window_ns if window_ns else None


def level_summary(
    records: Iterable[RequestRecord],
    limits: UserLimits | Mapping[str, float | None] | None = None,
    *,
    level: Mapping[str, Any] | None = None,
    health: Mapping[str, Any] | None = None,
    tokenize_tokens: int | None = None,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Every figure of one load level, as a JSON-ready dict.

    ``level`` holds what was offered and is copied in first (``{"concurrency": 8}`` or
    ``{"rate": 2.0}``); ``health`` is the level's ``RunRecord.health`` entry and decides
    ``valid``. Empty and all-failed levels give None figures, never an exception.
    """
    all_records = list(records)
    reqs = measured(all_records)
    per = [request_metrics(r) for r in reqs]
    done = [m for m in per if m.ok]
    failed = len(per) - len(done)
    window = _window_ns(reqs)
    user_limits = UserLimits.coerce(limits)
    total_tokens = sum(m.output_tokens for m in done)

    def dist(values: Iterable[float | None]) -> Distribution:
        return describe(_ms(values), seed=seed)

    good = sum(1 for m in per if user_limits.met_by(m)) if user_limits else None
    summary: dict[str, Any] = {**(level or {}), **validity(health)}
    summary.update(
        n=len(per),
        completed=len(done),
        errors=failed,
        error_rate=failed / len(per) if per else None,
        error_classes=dict(Counter(r.error_class or "Incomplete" for r in reqs if not r.ok)),
        not_sent=sum(1 for r in all_records if not r.warmup and r.sent_ns is None),
        warmup_excluded=sum(1 for r in all_records if r.warmup),
        duration_s=window / NS_PER_S if window else None,
        ttfr_ms=dist(m.ttfr_ns for m in done),
        ttft_ms=dist(m.ttft_ns for m in done),
        ttfa_ms=dist(m.ttfa_ns for m in done),
        itl_ms=dist(m.itl_ns for m in done),
        e2e_ms=dist(m.e2e_ns for m in done),
        tokens_per_s_per_user=describe([t for m in done if (t := m.tokens_per_s) is not None], seed=seed),
        output_tokens=describe([m.output_tokens for m in done], ci=False),
        output_tokens_total=total_tokens,
        output_tokens_per_s=_per_s(total_tokens, window),
        requests_per_s=_per_s(len(done), window),
        limits=({"ttft_ms": user_limits.ttft_ms, "itl_ms": user_limits.itl_ms} if user_limits else None),
        good_requests=good,
        goodput_per_s=_per_s(good, window) if good is not None else None,
        # True only if every count came from usage; a chunk-counted level is a lower bound.
        tokens_from_usage=bool(done) and all(m.tokens_from_usage for m in done),
        requests_counted_from_chunks=sum(1 for m in done if not m.tokens_from_usage),
        reconciliation=reconcile_tokens(reqs, tokenize_tokens),
        output_length_honoured=output_length_honoured(reqs),
    )
    return summary


# --- a run -------------------------------------------------------------------------------------


def _by_level(records: Iterable[RequestRecord]) -> dict[int, list[RequestRecord]]:
    groups: dict[int, list[RequestRecord]] = {}
    for r in records:
        groups.setdefault(r.level, []).append(r)
    return groups


def _level_params(run: RunRecord, given: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """What each level offered: as given, else read from the stored workload JSON."""
    if given is not None:
        return [dict(p) for p in given]
    w: Mapping[str, Any] = run.workload if isinstance(run.workload, Mapping) else {}
    if run.kind == "depth":
        # The runner's level index is the cell's position in DepthWorkload.cells(): depth outermost.
        pps, tgs, depths = w.get("pp") or [], w.get("tg") or [], w.get("depths") or []
        return [{"pp": p, "tg": t, "depth": d} for d in depths for p in pps for t in tgs]
    if w.get("concurrency"):
        return [{"concurrency": c} for c in w["concurrency"]]
    return [{"rate": r} for r in w.get("rates") or []]


def run_summary(
    run: RunRecord,
    *,
    limits: UserLimits | Mapping[str, float | None] | None = None,
    level_params: Sequence[Mapping[str, Any]] | None = None,
    latency_floor_ns: int = 0,
    tokenize_tokens: Mapping[int, int] | None = None,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """``{"run_id", "levels": [...]}`` for a sweep, ``{"run_id", "cells": [...]}`` for depth.

    One entry per level index, in order, including levels with no requests (None figures).
    ``level_params`` and ``limits`` default to what the stored workload says.
    """
    # Imported here so the depth module may import this one without a cycle.
    from benchmark.depth_metrics import depth_cell_summary

    params = _level_params(run, level_params)
    if limits is None and isinstance(run.workload, Mapping):
        limits = run.workload.get("limits")
    groups = _by_level(run.requests)
    count = max([len(params), *(i + 1 for i in groups)], default=0)
    entries = []
    for i in range(count):
        recs = groups.get(i, [])
        info = {"level": i, **(params[i] if i < len(params) else {})}
        health = run.health[i] if i < len(run.health) else None
        if run.kind == "depth":
            entries.append(depth_cell_summary(recs, latency_floor_ns, cell=info, health=health, seed=seed))
        else:
            entries.append(
                level_summary(
                    recs,
                    limits,
                    level=info,
                    health=health,
                    tokenize_tokens=(tokenize_tokens or {}).get(i),
                    seed=seed,
                )
            )
    return {"run_id": run.run_id, "cells" if run.kind == "depth" else "levels": entries}
