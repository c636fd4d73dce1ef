"""Two runs side by side: per level and metric, the delta with its 95% CI and a plain verdict.

Computed from the stored per-request figures (not the summaries), so the CI
reflects the spread of both runs. Levels are matched by their value
(concurrency 8 with concurrency 8; a depth cell with the same pp, tg and depth).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmark.depth_metrics import pp_tps, tg_tps
from benchmark.metrics import measured, request_metrics
from benchmark.records import RequestRecord, RunRecord
from benchmark.stats import Comparison, compare, phrase

NS_PER_MS = 1e6


@dataclass(frozen=True)
class Metric:
    key: str
    what: str  # how the verdict phrases it: "12% faster to first token"
    higher_is_better: bool
    value: Callable[[RequestRecord, int], float | None]


def _ms(get: Callable[[RequestRecord], Any]) -> Callable[[RequestRecord, int], float | None]:
    def value(record: RequestRecord, _floor: int) -> float | None:
        ns = get(request_metrics(record))
        return ns / NS_PER_MS if ns is not None else None

    return value


SWEEP_METRICS = (
    Metric("ttft_ms", "to first token", False, _ms(lambda m: m.ttft_ns)),
    Metric("itl_ms", "between tokens", False, _ms(lambda m: m.itl_ns)),
    Metric("e2e_ms", "end to end", False, _ms(lambda m: m.e2e_ns)),
)
DEPTH_METRICS = (
    Metric("pp_tps", "at prompt processing", True, lambda r, floor: pp_tps(r, floor)),
    Metric("tg_tps", "at generation", True, lambda r, _floor: tg_tps(r)),
)


def level_keys(run: RunRecord) -> list[tuple[str, tuple[float, ...]]]:
    """Each level's label and matching key, in the run's order."""
    w = run.workload
    if run.kind == "depth":
        cells = [(p, t, d) for d in w["depths"] for p in w["pp"] for t in w["tg"]]
        return [(f"pp{p} tg{t} @ d{d}", (p, t, d)) for p, t, d in cells]
    axis = "concurrency" if w.get("concurrency") else "rate"
    return [(f"{axis} {v:g}", (v,)) for v in (w.get("concurrency") or w.get("rates") or [])]


@dataclass(frozen=True)
class Row:
    level: str
    metric: str
    comparison: Comparison
    verdict: str  # one sentence


def _label(run: RunRecord) -> str:
    return run.model_id or run.served_model or run.run_id


def compare_runs(a: RunRecord, b: RunRecord) -> list[Row]:
    if a.kind != b.kind:
        raise ValueError(
            f"run {a.run_id} is a {a.kind} run and {b.run_id} a {b.kind} run; compare like with like"
        )
    metrics: Sequence[Metric] = DEPTH_METRICS if a.kind == "depth" else SWEEP_METRICS
    levels_b = {key: i for i, (_, key) in enumerate(level_keys(b))}
    floor_a = int(a.results.get("latency_floor_ns") or 0)
    floor_b = int(b.results.get("latency_floor_ns") or 0)
    rows: list[Row] = []
    for index_a, (label, key) in enumerate(level_keys(a)):
        index_b = levels_b.get(key)
        if index_b is None:
            continue
        recs_a = [r for r in measured(a.requests) if r.level == index_a and r.ok]
        recs_b = [r for r in measured(b.requests) if r.level == index_b and r.ok]
        for metric in metrics:
            values_a = [v for r in recs_a if (v := metric.value(r, floor_a)) is not None]
            values_b = [v for r in recs_b if (v := metric.value(r, floor_b)) is not None]
            result = compare(values_a, values_b, higher_is_better=metric.higher_is_better)
            sentence = f"{_label(b)} vs {_label(a)}: {phrase(result, metric.what)}"
            rows.append(Row(label, metric.key, result, sentence))
    return rows
