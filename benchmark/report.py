"""Tables for people: a sweep's levels, a depth run in llama-bench's layout, run lists, comparisons.

The depth table is markdown, laid out like llama-bench's (one row per test,
``t/s`` as mean ± sd), ready to paste into a forum post.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from benchmark.compare import Row
from benchmark.records import RunRecord


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(dist: Mapping[str, Any] | None, key: str) -> str:
    return _num((dist or {}).get(key))


def sweep_table(run: RunRecord) -> Table:
    table = Table(title=f"run {run.run_id}: {run.model_id or run.served_model} ({run.status})")
    for header in (
        "level",
        "ok/err",
        "TTFT p50/p99 ms",
        "TTFA p50 ms",
        "ITL p50 ms",
        "E2E p50 ms",
        "out tok/s",
        "req/s",
        "goodput/s",
        "valid",
    ):
        table.add_column(header, justify="right")
    for level in run.results.get("levels", []):
        axis = "concurrency" if "concurrency" in level else "rate"
        valid = "yes" if level.get("valid") else f"no: {level.get('invalid_reason')}"
        ttft = level.get("ttft_ms")
        table.add_row(
            f"{axis} {level.get(axis, '?'):g}" if level.get(axis) is not None else "?",
            f"{level.get('completed') or 0}/{level.get('errors') or 0}",
            f"{_p(ttft, 'p50')} / {_p(ttft, 'p99')}",
            _p(level.get("ttfa_ms"), "p50"),
            _p(level.get("itl_ms"), "p50"),
            _p(level.get("e2e_ms"), "p50"),
            _num(level.get("output_tokens_per_s")),
            _num(level.get("requests_per_s"), 2),
            _num(level.get("goodput_per_s"), 2),
            valid,
        )
    return table


def _mean_sd(stat: Mapping[str, Any] | None) -> str:
    stat = stat or {}
    if stat.get("mean") is None:
        return "-"
    sd = stat.get("sd")
    return f"{stat['mean']:.2f} ± {sd:.2f}" if sd is not None else f"{stat['mean']:.2f}"


def depth_markdown(run: RunRecord) -> str:
    """llama-bench's table: one row per test (pp then tg) per depth."""
    model = run.model_id or run.served_model or "?"
    engine = run.engine or "?"
    lines = ["| model | engine | test | t/s |", "| --- | --- | ---: | ---: |"]
    for cell in run.results.get("cells", []):
        depth = f" @ d{cell['depth']}" if cell.get("depth") else ""
        lines.append(f"| {model} | {engine} | pp{cell.get('pp')}{depth} | {_mean_sd(cell.get('pp_tps'))} |")
        lines.append(f"| {model} | {engine} | tg{cell.get('tg')}{depth} | {_mean_sd(cell.get('tg_tps'))} |")
    return "\n".join(lines)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def runs_table(runs: Sequence[RunRecord]) -> Table:
    table = Table(title="benchmark runs, newest first")
    table.add_column("run", no_wrap=True, min_width=12)  # an id to copy whole
    for header in ("started (UTC)", "kind", "model", "engine", "status", "workload"):
        table.add_column(header)
    for run in runs:
        workload = run.workload
        table.add_row(
            run.run_id,
            _when(run.started_at),
            run.kind,
            run.model_id or run.served_model or "-",
            run.engine or "-",
            run.status + (f" ({run.error})" if run.error else ""),
            str(workload.get("concurrency") or workload.get("rates") or workload.get("depths") or ""),
        )
    return table


def compare_table(a: RunRecord, b: RunRecord, rows: Sequence[Row]) -> Table:
    name_a, name_b = a.model_id or a.served_model, b.model_id or b.served_model
    table = Table(title=f"B = {b.run_id} ({name_b}) against A = {a.run_id} ({name_a})")
    for header in ("level", "metric", "A p50", "B p50", "delta", "95% CI", "verdict"):
        table.add_column(header)
    for row in rows:
        c = row.comparison
        delta = "-" if c["relative_delta"] is None else f"{c['relative_delta'] * 100:+.1f}%"
        ci = "-" if c["ci"] is None else f"{c['ci'][0] * 100:+.1f}% .. {c['ci'][1] * 100:+.1f}%"
        table.add_row(
            row.level, row.metric, _num(c["median_a"], 2), _num(c["median_b"], 2), delta, ci, c["verdict"]
        )
    return table
