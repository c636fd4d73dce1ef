"""The Benchmark page's tables: flat rows for ``st.dataframe``, plain verdicts, markdown to paste.

Pure functions of stored ``RunRecord``s: no Streamlit calls, so every table can be checked in a
unit test and the page stays a thin layout of what these return. Column names are the keys of
``METRIC_HELP``, so the page can hang a one-line definition on every column header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from benchmark.compare import DEPTH_METRICS, SWEEP_METRICS, Row, compare_runs
from benchmark.records import RunRecord
from benchmark.report import depth_markdown
from benchmark.stats import Comparison

__all__ = [
    "METRIC_HELP",
    "ComparisonView",
    "compare_view",
    "comparison_rows",
    "depth_markdown",
    "depth_rows",
    "level_name",
    "run_label",
    "run_labels",
    "run_markdown",
    "sweep_markdown",
    "sweep_rows",
    "verdicts",
]

_EN_DASH: Final = "\u2013"  # an escape: ruff flags the literal as ambiguous
_PLUS_MINUS: Final = "\u00b1"

# One line per column of every table below. The definitions are DESIGN.md's "Benchmark facts",
# worded for someone reading the table rather than the code.
METRIC_HELP: Final[dict[str, str]] = {
    "model": "The catalog model (or the name the server answers to) the run measured.",
    "run": "The stored run's id.",
    "level": "The offered load: concurrent requests in flight, or requests sent per second (rate).",
    "ok": "Requests that completed (warm-ups excluded).",
    "errors": "Requests that failed or never finished; they count against goodput.",
    "TTFR p50 (ms)": "Time to first response: median time from sending to the first streamed frame.",
    "TTFT p50 (ms)": "Time to first token: median time to the first token on any channel (reasoning counts).",
    "TTFT p99 (ms)": "Time to first token, 99th percentile: the slow tail users notice.",
    "TTFA p50 (ms)": "Time to first answer: median time to the first answer (content) token, reasoning over.",
    "ITL p50 (ms)": "Inter-token latency, median: (E2E - TTFT) / (output tokens - 1), AIPerf's definition.",
    "E2E p50 (ms)": "End to end, median: from sending the request to the end of its stream.",
    "tok/s/user p50": "Tokens per second one user sees, median: 1 / ITL.",
    "out tok/s": "Output throughput: all output tokens / (last completion - first send).",
    "req/s": "Completed requests per second over the same window as output throughput.",
    "goodput/s": "Requests meeting every user limit (TTFT, ITL) per second; failures count as misses.",
    "valid": (
        "Whether the runner kept time: its own event-loop lag p99 <= 5 ms and send slip p99 <= 10 ms. "
        "An invalid level measured the client, not the server."
    ),
    "invalid reason": "Why the runner voided the level (which of its own limits it broke, and by how much).",
    "pp": "Prompt tokens asked for in the cell (llama-bench's pp).",
    "tg": "Tokens to generate in the cell (llama-bench's tg).",
    "depth": "Tokens of context already in the conversation before the prompt (llama-bench's depth).",
    "pp t/s": (
        "Prompt processing speed, mean over the cell's runs: "
        "prompt tokens processed / (TTFT - latency floor)."
    ),
    "pp t/s sd": "Standard deviation of pp t/s over the cell's runs.",
    "tg t/s": "Generation speed, mean over the cell's runs: (output tokens - 1) / (last - first token).",
    "tg t/s sd": "Standard deviation of tg t/s over the cell's runs.",
    "metric": "The figure being compared.",
    "A p50": "Run A's median of the metric.",
    "B p50": "Run B's median of the metric.",
    "delta %": "How B's median differs from A's: median(B) / median(A) - 1, in percent.",
    "CI low %": "Low end of the 95% bootstrap confidence interval of the delta.",
    "CI high %": "High end of the 95% bootstrap confidence interval of the delta.",
    "verdict": "The comparison in words; 'no significant difference' when the CI straddles 0.",
}

# What each compared metric is called in a table and in a "no difference in ..." sentence.
_METRIC_NAMES: Final[dict[str, tuple[str, str]]] = {
    "ttft_ms": ("TTFT (ms)", "time to first token"),
    "itl_ms": ("ITL (ms)", "inter-token latency"),
    "e2e_ms": ("E2E (ms)", "end-to-end latency"),
    "pp_tps": ("pp t/s", "prompt processing speed"),
    "tg_tps": ("tg t/s", "generation speed"),
}
# How a clear difference reads ("12% faster to first token"), taken from compare so both agree.
_WHAT: Final[dict[str, str]] = {m.key: m.what for m in (*SWEEP_METRICS, *DEPTH_METRICS)}


# --- labels ------------------------------------------------------------------------------------


def run_label(run: RunRecord) -> str:
    """The model's name for legends and sentences; the run id only when nothing better exists."""
    return run.model_id or run.served_model or run.run_id


def run_labels(runs: Sequence[RunRecord]) -> dict[str, str]:
    """run_id -> label, unique across ``runs``.

    Two runs of the same model would merge into one colour and one legend entry, so those get a
    short run id suffix; the full id is used only if even the short ones collide.
    """
    counts: dict[str, int] = {}
    for run in runs:
        counts[run_label(run)] = counts.get(run_label(run), 0) + 1
    labels = {
        run.run_id: run_label(run) if counts[run_label(run)] == 1 else f"{run_label(run)} ({run.run_id[:6]})"
        for run in runs
    }
    if len(set(labels.values())) < len(labels):
        labels = {
            run.run_id: run_label(run) if counts[run_label(run)] == 1 else f"{run_label(run)} ({run.run_id})"
            for run in runs
        }
    return labels


def level_name(level: Mapping[str, Any]) -> str:
    """ "concurrency 8", "rate 2.5" or "pp512 tg128 @ d4096", as compare and the runner name them."""
    if "pp" in level or "tg" in level:
        depth = level.get("depth")
        return f"pp{level.get('pp')} tg{level.get('tg')}" + (f" @ d{depth}" if depth is not None else "")
    for axis in ("concurrency", "rate"):
        if level.get(axis) is not None:
            return f"{axis} {level[axis]:g}"
    return f"level {level.get('level', '?')}"


# --- small formatting helpers --------------------------------------------------------------------


def _round(value: Any, digits: int) -> float | None:
    """Rounded for display; None (no samples) stays None so the dataframe shows a blank."""
    return None if value is None else round(float(value), digits)


def _stat(level: Mapping[str, Any], key: str, stat: str, digits: int = 2) -> float | None:
    return _round((level.get(key) or {}).get(stat), digits)


def _valid(level: Mapping[str, Any]) -> tuple[bool, str | None]:
    # A level without a verdict is one the runner had no complaint about (see metrics.validity).
    valid = bool(level.get("valid", True))
    reason = None if valid else (level.get("invalid_reason") or "marked invalid by the runner")
    return valid, reason


# --- per-run tables ------------------------------------------------------------------------------


def sweep_rows(run: RunRecord) -> list[dict[str, Any]]:
    """One flat row per sweep level, columns as in ``METRIC_HELP``; empty for a depth run."""
    label = run_label(run)
    rows = []
    for level in run.results.get("levels", []):
        valid, reason = _valid(level)
        rows.append(
            {
                "model": label,
                "run": run.run_id,
                "level": level_name(level),
                "ok": level.get("completed") or 0,
                "errors": level.get("errors") or 0,
                "TTFR p50 (ms)": _stat(level, "ttfr_ms", "p50"),
                "TTFT p50 (ms)": _stat(level, "ttft_ms", "p50"),
                "TTFT p99 (ms)": _stat(level, "ttft_ms", "p99"),
                "TTFA p50 (ms)": _stat(level, "ttfa_ms", "p50"),
                "ITL p50 (ms)": _stat(level, "itl_ms", "p50"),
                "E2E p50 (ms)": _stat(level, "e2e_ms", "p50"),
                "tok/s/user p50": _stat(level, "tokens_per_s_per_user", "p50", 1),
                "out tok/s": _round(level.get("output_tokens_per_s"), 1),
                "req/s": _round(level.get("requests_per_s"), 3),
                "goodput/s": _round(level.get("goodput_per_s"), 3),
                "valid": valid,
                "invalid reason": reason,
            }
        )
    return rows


def depth_rows(run: RunRecord) -> list[dict[str, Any]]:
    """One flat row per depth cell: pp, tg, depth, pp t/s and tg t/s as mean and sd columns.

    Mean and sd are separate numbers (not one "mean ± sd" string) so the dataframe sorts them.
    """
    label = run_label(run)
    rows = []
    for cell in run.results.get("cells", []):
        valid, reason = _valid(cell)
        rows.append(
            {
                "model": label,
                "run": run.run_id,
                "pp": cell.get("pp"),
                "tg": cell.get("tg"),
                "depth": cell.get("depth"),
                "ok": cell.get("completed") or 0,
                "errors": cell.get("errors") or 0,
                "pp t/s": _stat(cell, "pp_tps", "mean"),
                "pp t/s sd": _stat(cell, "pp_tps", "sd"),
                "tg t/s": _stat(cell, "tg_tps", "mean"),
                "tg t/s sd": _stat(cell, "tg_tps", "sd"),
                "valid": valid,
                "invalid reason": reason,
            }
        )
    return rows


# --- comparisons ---------------------------------------------------------------------------------


def _pct(fraction: float) -> str:
    """A magnitude in percent: whole numbers, one decimal below 1% so small effects don't read 0%."""
    value = abs(fraction) * 100
    return f"{value:.1f}" if value < 1 else f"{value:.0f}"


def _signed_pct(fraction: float) -> str:
    value = fraction * 100
    return f"{value:+.1f}" if abs(value) < 1 else f"{value:+.0f}"


def _invert(fraction: float) -> float | None:
    """A's change against B from B's change against A: 1 / (1 + d) - 1; None where undefined."""
    return 1.0 / (1.0 + fraction) - 1.0 if 1.0 + fraction > 0 else None


def _verdict(row: Row, name_a: str, name_b: str) -> str:
    """One sentence naming the better run first, e.g. "B is 12% faster to first token than A at
    concurrency 4 (CI 8-15%)".

    compare's delta is B against A. When B is the slower one the sentence is turned round so the
    faster model is the subject, and the delta and its CI are re-expressed against B (the ratio
    inverted; a percentile CI maps through a monotone function, so its bounds just swap).
    """
    c: Comparison = row.comparison
    noun = _METRIC_NAMES.get(row.metric, (row.metric, row.metric))[1]
    what = _WHAT.get(row.metric, row.metric)
    delta, ci, verdict = c["relative_delta"], c["ci"], c["verdict"]
    at = f"at {row.level}"
    if delta is None or ci is None:
        return f"not enough data to compare {noun} between {name_b} and {name_a} {at}"
    if verdict == "no significant difference":
        return (
            f"no significant difference in {noun} between {name_b} and {name_a} {at} "
            f"({_signed_pct(delta)}%, CI {_signed_pct(ci[0])}% to {_signed_pct(ci[1])}%)"
        )
    subject, other = name_b, name_a
    lo, hi = ci[0], ci[1]
    if verdict == "slower":
        # 1/(1+d) - 1 is decreasing, so the inverted bounds swap ends.
        f_delta, f_lo, f_hi = _invert(delta), _invert(hi), _invert(lo)
        if f_delta is not None and f_lo is not None and f_hi is not None:
            subject, other = name_a, name_b
            delta, lo, hi = f_delta, f_lo, f_hi
            verdict = "faster"
    low, high = sorted((abs(lo), abs(hi)))
    return (
        f"{subject} is {_pct(delta)}% {verdict} {what} than {other} {at} "
        f"(CI {_pct(low)}{_EN_DASH}{_pct(high)}%)"
    )


def _pair_labels(a: RunRecord, b: RunRecord) -> tuple[str, str]:
    labels = run_labels([a, b]) if a.run_id != b.run_id else {a.run_id: run_label(a)}
    return labels[a.run_id], labels[b.run_id]


def _invalid_levels(run: RunRecord) -> dict[str, str]:
    """Level name -> why the runner voided it, keyed as compare names levels."""
    entries = run.results.get("cells" if run.kind == "depth" else "levels") or []
    return {level_name(e): reason for e in entries if (reason := _valid(e)[1]) is not None}


@dataclass(frozen=True)
class ComparisonView:
    """Two runs compared, as the page shows it: a row and a sentence per valid level and metric,
    and a line per level left out because either run voided it (it measured the client there)."""

    rows: list[dict[str, Any]]
    verdicts: list[str]
    left_out: list[str]


def _voided(a: RunRecord, b: RunRecord) -> dict[str, str]:
    """Level name -> why it can't be compared, naming the run (or both) that voided it."""
    name_a, name_b = _pair_labels(a, b)
    notes: dict[str, list[str]] = {}
    for name, run in ((name_a, a), (name_b, b)):
        for level, reason in _invalid_levels(run).items():
            notes.setdefault(level, []).append(f"{name}'s run voided it: {reason}")
    return {level: "; ".join(why) for level, why in notes.items()}


def _row(row: Row, sentence: str) -> dict[str, Any]:
    c = row.comparison
    ci = c["ci"]
    return {
        "level": row.level,
        "metric": _METRIC_NAMES.get(row.metric, (row.metric, row.metric))[0],
        "A p50": _round(c["median_a"], 2),
        "B p50": _round(c["median_b"], 2),
        "delta %": None if c["relative_delta"] is None else round(c["relative_delta"] * 100, 1),
        "CI low %": None if ci is None else round(ci[0] * 100, 1),
        "CI high %": None if ci is None else round(ci[1] * 100, 1),
        "verdict": sentence,
    }


def compare_view(a: RunRecord, b: RunRecord) -> ComparisonView:
    """B against A, level by level; both runs need their requests (the CI comes from the
    per-request figures, not the summaries).

    compare works from the requests, so it would compare levels the runner voided as readily as
    any; a verdict there would describe the client, so those levels get no row and no sentence,
    only a line in ``left_out`` saying why. Raises ValueError (from compare_runs) when a sweep is
    compared with a depth run.
    """
    name_a, name_b = _pair_labels(a, b)
    voided = _voided(a, b)
    rows, sentences, left_out = [], [], {}
    for row in compare_runs(a, b):
        if row.level in voided:
            left_out[row.level] = f"{row.level}: {voided[row.level]}"
            continue
        sentence = _verdict(row, name_a, name_b)
        rows.append(_row(row, sentence))
        sentences.append(sentence)
    return ComparisonView(rows, sentences, list(left_out.values()))


def verdicts(a: RunRecord, b: RunRecord) -> list[str]:
    """One sentence per compared valid level and metric (B against A); see ``compare_view``."""
    return compare_view(a, b).verdicts


def comparison_rows(a: RunRecord, b: RunRecord) -> list[dict[str, Any]]:
    """One flat row per compared valid level and metric: medians, delta % with its 95% CI and
    the verdict; see ``compare_view``."""
    return compare_view(a, b).rows


# --- markdown ------------------------------------------------------------------------------------


def _md(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell(text: str) -> str:
    # A pipe inside a cell would end it early in any markdown table.
    return text.replace("|", "\\|")


def sweep_markdown(run: RunRecord) -> str:
    """The sweep's levels as a markdown table, ready to paste into a forum post."""
    model = _cell(run_label(run))
    lines = [
        f"**{model}** ({_cell(run.engine or '?')}), run `{run.run_id}`",
        "",
        "| level | ok/err | TTFT p50 / p99 ms | TTFA p50 ms | ITL p50 ms | E2E p50 ms "
        "| out tok/s | req/s | goodput/s | valid |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for level in run.results.get("levels", []):
        valid, reason = _valid(level)
        ttft = level.get("ttft_ms") or {}
        cells = [
            level_name(level),
            f"{level.get('completed') or 0}/{level.get('errors') or 0}",
            f"{_md(ttft.get('p50'))} / {_md(ttft.get('p99'))}",
            _md((level.get("ttfa_ms") or {}).get("p50")),
            _md((level.get("itl_ms") or {}).get("p50")),
            _md((level.get("e2e_ms") or {}).get("p50")),
            _md(level.get("output_tokens_per_s")),
            _md(level.get("requests_per_s"), 2),
            _md(level.get("goodput_per_s"), 2),
            "yes" if valid else f"no: {reason}",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def run_markdown(run: RunRecord) -> str:
    """The run's table for a forum post: llama-bench's layout for depth, the level table otherwise."""
    return depth_markdown(run) if run.kind == "depth" else sweep_markdown(run)
