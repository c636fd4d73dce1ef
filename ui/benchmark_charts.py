"""The Benchmark page's charts: Altair specs built from stored runs, one model per colour.

Pure functions of ``RunRecord``s (no Streamlit calls): the page hands the result to
``st.altair_chart``, and the tests read ``chart.to_dict()``. Rules every chart keeps:

- A level the runner marked invalid (its own event loop lagged, or sends slipped) measured the
  client, not the server, so it is never drawn. ``excluded_levels`` lists what was left out and
  why, for the page to print under the charts.
- Models are told apart by colour; two runs of the same model get a run id suffix
  (``ui.benchmark_tables.run_labels``) so they don't merge into one line.
- Data goes in inline (``alt.Data(values=...)``) rather than as a DataFrame: Altair's DataFrame
  path refuses more than 5000 rows, and one long answer's token gaps can pass that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import compress
from typing import Any, Final

import altair as alt
import numpy as np

from benchmark.metrics import NS_PER_MS, measured
from benchmark.records import Channel, RequestRecord, RunRecord
from ui.benchmark_tables import level_name, run_labels

__all__ = [
    "AnyChart",
    "depth_chart",
    "depth_points",
    "excluded_levels",
    "itl_chart",
    "sweep_axis",
    "sweep_points",
    "throughput_chart",
    "token_gaps",
    "token_gaps_chart",
    "tradeoff_chart",
    "ttft_chart",
    "ttft_histogram",
    "ttft_values",
]

# What the chart functions return: a single mark, or layers / panels of them.
AnyChart = alt.Chart | alt.LayerChart | alt.HConcatChart

_AXES: Final = ("concurrency", "rate")
_CHANNEL_NAMES: Final = {Channel.CONTENT: "answer", Channel.REASONING: "reasoning"}
# Full-opacity legend symbols and labels: Vega-Lite draws a legend symbol with its mark's opacity,
# so the translucent CI bands (and histogram bars) would otherwise leave the legend faint.
_COLOR: Final = alt.Color("model:N", title="model", legend=alt.Legend(symbolOpacity=1, labelOpacity=1))
# The dashes that tell lines apart (p50 from p99, one depth cell from another), drawn in the legend.
_DASH_LEGEND: Final = alt.Legend(symbolType="stroke", symbolStrokeWidth=2, symbolOpacity=1)


# --- what gets drawn -----------------------------------------------------------------------------


def _axis_of(level: Mapping[str, Any]) -> str | None:
    return next((axis for axis in _AXES if level.get(axis) is not None), None)


def _sweep_runs(runs: Iterable[RunRecord]) -> list[RunRecord]:
    return [run for run in runs if run.kind != "depth" and run.results.get("levels")]


def sweep_axis(runs: Sequence[RunRecord]) -> str | None:
    """The x axis the sweep charts share: "concurrency" or "rate", or None with nothing to plot.

    A concurrency sweep and a rate sweep cannot share an axis; the first run's axis wins, and
    ``excluded_levels`` names the levels of the other kind.
    """
    for run in _sweep_runs(runs):
        for level in run.results["levels"]:
            if (axis := _axis_of(level)) is not None:
                return axis
    return None


def _stat(level: Mapping[str, Any], key: str, stat: str) -> float | None:
    value = (level.get(key) or {}).get(stat)
    return None if value is None else float(value)


def _ci(level: Mapping[str, Any], key: str) -> tuple[float | None, float | None]:
    ci = (level.get(key) or {}).get("p50_ci")
    return (float(ci[0]), float(ci[1])) if ci else (None, None)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def sweep_points(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per valid level on the shared axis, with every figure the sweep charts draw.

    Keys: model, run, level, x (the concurrency or rate), out_tps, req_s, goodput_s, n, ok,
    ttft_p50, ttft_p99, ttft_lo, ttft_hi, itl_p50, itl_lo, itl_hi, tps_user_p50. Latencies in ms.
    """
    axis = sweep_axis(runs)
    labels = run_labels(runs)
    points = []
    for run in _sweep_runs(runs):
        for level in run.results["levels"]:
            if not level.get("valid", True) or level.get(axis) is None:
                continue
            ttft_lo, ttft_hi = _ci(level, "ttft_ms")
            itl_lo, itl_hi = _ci(level, "itl_ms")
            points.append(
                {
                    "model": labels[run.run_id],
                    "run": run.run_id,
                    "level": level_name(level),
                    "x": float(level[axis]),
                    "out_tps": _number(level.get("output_tokens_per_s")),
                    "req_s": _number(level.get("requests_per_s")),
                    "goodput_s": _number(level.get("goodput_per_s")),
                    "n": level.get("n") or 0,
                    "ok": level.get("completed") or 0,
                    "ttft_p50": _stat(level, "ttft_ms", "p50"),
                    "ttft_p99": _stat(level, "ttft_ms", "p99"),
                    "ttft_lo": ttft_lo,
                    "ttft_hi": ttft_hi,
                    "itl_p50": _stat(level, "itl_ms", "p50"),
                    "itl_lo": itl_lo,
                    "itl_hi": itl_hi,
                    "tps_user_p50": _stat(level, "tokens_per_s_per_user", "p50"),
                }
            )
    return points


def excluded_levels(runs: Sequence[RunRecord]) -> list[str]:
    """A line per level or depth cell the charts leave out, e.g.
    "gpt-oss-20b concurrency 64: client event-loop lag p99 7.2 ms > 5 ms"."""
    labels = run_labels(runs)
    axis = sweep_axis(runs)
    lines = []
    for run in runs:
        entries = run.results.get("cells" if run.kind == "depth" else "levels") or []
        for entry in entries:
            name = f"{labels[run.run_id]} {level_name(entry)}"
            if not entry.get("valid", True):
                lines.append(f"{name}: {entry.get('invalid_reason') or 'marked invalid by the runner'}")
            elif run.kind != "depth" and (own := _axis_of(entry)) is not None and own != axis:
                lines.append(f"{name}: a {own} level, and these charts plot {axis}")
    return lines


# --- sweep charts --------------------------------------------------------------------------------


def _x(axis: str, points: Sequence[Mapping[str, Any]]) -> alt.X:
    """Concurrency doubles from level to level, so a log axis spaces it evenly; ticks sit on the
    levels that were run rather than on round numbers nobody offered."""
    ticks = sorted({p["x"] for p in points})
    if axis == "concurrency":
        return alt.X(
            "x:Q",
            title="concurrency (requests in flight, log scale)",
            scale=alt.Scale(type="log", base=2),
            axis=alt.Axis(values=ticks, format="~g"),
        )
    return alt.X("x:Q", title="offered rate (requests/s)", axis=alt.Axis(values=ticks, format="~g"))


def _level_tooltip(axis: str) -> list[alt.Tooltip]:
    return [
        alt.Tooltip("model:N", title="model"),
        alt.Tooltip("run:N", title="run"),
        alt.Tooltip("x:Q", title=axis, format="~g"),
        alt.Tooltip("ok:Q", title="completed requests"),
    ]


def _points_with(runs: Sequence[RunRecord], *keys: str) -> tuple[str, list[dict[str, Any]]] | None:
    """The shared axis and the points that have every figure in ``keys``; None if none do."""
    axis = sweep_axis(runs)
    points = [p for p in sweep_points(runs) if all(p[k] is not None for k in keys)]
    return (axis, points) if axis is not None and points else None


def throughput_chart(runs: Sequence[RunRecord]) -> alt.Chart | None:
    """Total output tokens/s against concurrency (or rate), one line per model."""
    found = _points_with(runs, "out_tps")
    if found is None:
        return None
    axis, points = found
    return (
        alt.Chart(alt.Data(values=points), title="Output throughput")
        .mark_line(point=True)
        .encode(
            x=_x(axis, points),
            y=alt.Y("out_tps:Q", title="output tokens/s (all users)"),
            color=_COLOR,
            tooltip=[
                *_level_tooltip(axis),
                alt.Tooltip("out_tps:Q", title="output tokens/s", format=",.1f"),
                alt.Tooltip("req_s:Q", title="requests/s", format=",.3f"),
                alt.Tooltip("goodput_s:Q", title="goodput (requests/s)", format=",.3f"),
            ],
        )
    )


def _dashed_lines(
    base: alt.Chart, y: alt.Y, dash: alt.StrokeDash, tooltip: list[alt.Tooltip]
) -> list[alt.Chart]:
    """Lines told apart by their dash, and their points as a layer of their own: a line drawn
    with ``point=True`` gets a legend of filled dots, every entry the same dot, where a plain line
    shows its dash."""
    return [
        base.mark_line().encode(y=y, strokeDash=dash),
        base.mark_point(filled=True).encode(y=y, tooltip=tooltip),
    ]


def _latency_chart(
    runs: Sequence[RunRecord], prefix: str, title: str, y_title: str, stats: Sequence[str]
) -> alt.LayerChart | None:
    """Latency percentiles per level as lines, the p50's bootstrap 95% CI as a shaded band.

    The band says how far the median could move if the level were run again: where two models'
    bands overlap, the gap between their lines may be noise.
    """
    found = _points_with(runs, f"{prefix}_p50")
    if found is None:
        return None
    axis, points = found
    x = _x(axis, points)
    # Long form for the lines: one row per point and percentile, so strokeDash tells p50 from p99.
    long = [
        {**p, "stat": stat, "value": p[f"{prefix}_{stat}"]}
        for p in points
        for stat in stats
        if p[f"{prefix}_{stat}"] is not None
    ]
    tooltip = [
        *_level_tooltip(axis),
        *(alt.Tooltip(f"{prefix}_{s}:Q", title=f"{s} (ms)", format=",.2f") for s in stats),
        alt.Tooltip(f"{prefix}_lo:Q", title="p50 95% CI low (ms)", format=",.2f"),
        alt.Tooltip(f"{prefix}_hi:Q", title="p50 95% CI high (ms)", format=",.2f"),
    ]
    band_points = [p for p in points if p[f"{prefix}_lo"] is not None]
    band = (
        alt.Chart(alt.Data(values=band_points))
        .mark_area(opacity=0.2)
        .encode(x=x, y=alt.Y(f"{prefix}_lo:Q", title=y_title), y2=f"{prefix}_hi:Q", color=_COLOR)
    )
    lines = _dashed_lines(
        alt.Chart(alt.Data(values=long)).encode(x=x, color=_COLOR),
        alt.Y("value:Q", title=y_title),
        alt.StrokeDash("stat:N", title="percentile", sort=list(stats), legend=_DASH_LEGEND),
        tooltip,
    )
    layers = [band, *lines] if band_points else lines
    return alt.layer(*layers).properties(title=title)


def ttft_chart(runs: Sequence[RunRecord]) -> alt.LayerChart | None:
    """TTFT p50 and p99 against concurrency (or rate), with the p50's 95% CI as a band."""
    return _latency_chart(runs, "ttft", "Time to first token (p50 band: 95% CI)", "TTFT (ms)", ("p50", "p99"))


def itl_chart(runs: Sequence[RunRecord]) -> alt.LayerChart | None:
    """ITL p50 against concurrency (or rate), with its 95% CI as a band."""
    return _latency_chart(runs, "itl", "Inter-token latency (p50, band: 95% CI)", "ITL p50 (ms)", ("p50",))


def tradeoff_chart(runs: Sequence[RunRecord]) -> alt.LayerChart | None:
    """Per-user speed against total throughput, one line per model, points labelled by level.

    The chart serving engineers read first: moving right is what one user feels, moving up is
    what the server delivers, and each step of load trades one for the other. A model whose
    line lies above and to the right of another's is better at every operating point.
    """
    found = _points_with(runs, "tps_user_p50", "out_tps")
    if found is None:
        return None
    axis, points = found
    suffix = "" if axis == "concurrency" else "/s"
    labelled = [{**p, "label": f"{p['x']:g}{suffix}"} for p in points]
    base = alt.Chart(alt.Data(values=labelled)).encode(
        x=alt.X("tps_user_p50:Q", title="tokens/s per user (p50 of 1 / ITL)"),
        y=alt.Y("out_tps:Q", title="output tokens/s (all users)"),
        color=_COLOR,
    )
    tooltip = [
        *_level_tooltip(axis),
        alt.Tooltip("tps_user_p50:Q", title="tokens/s per user (p50)", format=",.1f"),
        alt.Tooltip("out_tps:Q", title="output tokens/s", format=",.1f"),
        alt.Tooltip("ttft_p50:Q", title="TTFT p50 (ms)", format=",.2f"),
    ]
    # Ordered by load, so each line runs from the lightest level to the heaviest.
    line = base.mark_line().encode(order=alt.Order("x:Q"))
    dots = base.mark_point(filled=True, size=60).encode(tooltip=tooltip)
    text = base.mark_text(align="left", dx=7, dy=-7).encode(text="label:N")
    title = f"Latency-throughput trade-off (points labelled by {axis})"
    return alt.layer(line, dots, text).properties(title=title)


# --- depth ---------------------------------------------------------------------------------------


def depth_points(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per valid depth cell and test ("pp" or "tg"): mean, sd and mean ± sd, in t/s."""
    labels = run_labels(runs)
    points = []
    for run in runs:
        if run.kind != "depth":
            continue
        for cell in run.results.get("cells") or []:
            if not cell.get("valid", True) or cell.get("depth") is None:
                continue
            for test in ("pp", "tg"):
                stat = cell.get(f"{test}_tps") or {}
                mean, sd = _number(stat.get("mean")), _number(stat.get("sd"))
                if mean is None:
                    continue
                spread = sd or 0.0  # one repetition has no sd: a bar of zero height, not a gap
                points.append(
                    {
                        "model": labels[run.run_id],
                        "run": run.run_id,
                        "test": test,
                        "shape": f"pp{cell.get('pp')} tg{cell.get('tg')}",
                        "depth": cell["depth"],
                        "n": stat.get("n") or 0,
                        "mean": mean,
                        "sd": sd,
                        "lo": mean - spread,
                        "hi": mean + spread,
                    }
                )
    return points


def _depth_panel(points: Sequence[Mapping[str, Any]], test: str, title: str) -> alt.LayerChart:
    x = alt.X("depth:Q", title="depth (tokens of context before the prompt)")
    y_title = f"{test} t/s ({'prompt' if test == 'pp' else 'generated'} tokens/s)"
    base = alt.Chart(alt.Data(values=[p for p in points if p["test"] == test])).encode(x=x, color=_COLOR)
    tooltip = [
        alt.Tooltip("model:N", title="model"),
        alt.Tooltip("run:N", title="run"),
        alt.Tooltip("shape:N", title="cell"),
        alt.Tooltip("depth:Q", title="depth (tokens)"),
        alt.Tooltip("mean:Q", title=f"{test} t/s mean", format=",.2f"),
        alt.Tooltip("sd:Q", title=f"{test} t/s sd", format=",.2f"),
        alt.Tooltip("n:Q", title="repetitions"),
    ]
    # One line per model and cell shape (a run may hold several pp/tg pairs at each depth).
    lines = _dashed_lines(
        base,
        alt.Y("mean:Q", title=y_title),
        alt.StrokeDash("shape:N", title="cell", legend=_DASH_LEGEND),
        tooltip,
    )
    bars = base.mark_errorbar(ticks=True).encode(y=alt.Y("lo:Q", title=y_title), y2="hi:Q", detail="shape:N")
    return alt.layer(bars, *lines).properties(title=title)


def depth_chart(runs: Sequence[RunRecord]) -> alt.HConcatChart | None:
    """pp t/s and tg t/s against depth, side by side; mean over repetitions, bars at ± sd."""
    points = depth_points(runs)
    if not points:
        return None
    panels = [
        _depth_panel(points, test, title)
        for test, title in (("pp", "Prompt processing"), ("tg", "Generation"))
        if any(p["test"] == test for p in points)
    ]
    return alt.hconcat(*panels).properties(title="Speed against context depth (mean ± sd)")


# --- per request ---------------------------------------------------------------------------------


def _level_valid(run: RunRecord, index: int) -> bool:
    """From the stored summary, else the runner's health entry; a level neither mentions is valid."""
    entries = run.results.get("cells" if run.kind == "depth" else "levels") or []
    if index < len(entries) and "valid" in entries[index]:
        return bool(entries[index]["valid"])
    if index < len(run.health):
        return bool(run.health[index].get("valid", True))
    return True


def _level_names(run: RunRecord) -> dict[int, str]:
    entries = run.results.get("cells" if run.kind == "depth" else "levels") or []
    return {int(e.get("level", i)): level_name(e) for i, e in enumerate(entries)}


def _first_token_ns(record: RequestRecord) -> int | None:
    """``benchmark.metrics.ttft_ns`` at C speed: channels are ints with NONE = 0, so ``compress``
    keeps exactly the token frames (the same min, without an enum comparison per frame: a stored
    run of 10,000 requests holds over a million frames)."""
    return min(compress(record.frame_ns, record.frame_channel), default=None)


def ttft_values(run: RunRecord, level: str | None = None) -> list[float]:
    """TTFT (ms) of each measured, completed request on a valid level (optionally one level,
    named as ``level_name`` names it, e.g. "concurrency 8")."""
    names = _level_names(run)
    wanted: dict[int, bool] = {}  # level index -> its requests count here; judged once per level
    values = []
    for record in measured(run.requests):
        if record.level not in wanted:
            wanted[record.level] = _level_valid(run, record.level) and (
                level is None or names.get(record.level) == level
            )
        if wanted[record.level] and record.ok and (ttft := _first_token_ns(record)) is not None:
            values.append(ttft / NS_PER_MS)
    return values


def ttft_histogram(
    runs: Sequence[RunRecord], *, level: str | None = None, bins: int = 30
) -> alt.Chart | None:
    """Per-request TTFT as overlaid histograms, one colour per model (needs the runs' requests).

    Binned here, on edges shared by every model, so bars line up across models and the counts
    are in the spec (a test can check they add up to the requests).
    """
    labels = run_labels(runs)
    per_run = {run.run_id: ttft_values(run, level) for run in runs}
    every = [v for values in per_run.values() for v in values]
    if not every:
        return None
    edges = np.histogram_bin_edges(every, bins=bins)
    rows = []
    for run in runs:
        counts, _ = np.histogram(per_run[run.run_id], bins=edges)
        rows.extend(
            {
                "model": labels[run.run_id],
                "run": run.run_id,
                "start": float(edges[i]),
                "end": float(edges[i + 1]),
                "count": int(count),
            }
            for i, count in enumerate(counts)
            if count
        )
    where = f" at {level}" if level else ""
    return (
        alt.Chart(alt.Data(values=rows), title=f"TTFT per request{where}")
        .mark_bar(opacity=0.55)
        .encode(
            x=alt.X("start:Q", bin="binned", title="TTFT (ms)"),
            x2="end:Q",
            y=alt.Y("count:Q", title="requests", stack=None),
            color=_COLOR,
            tooltip=[
                alt.Tooltip("model:N", title="model"),
                alt.Tooltip("start:Q", title="from (ms)", format=",.2f"),
                alt.Tooltip("end:Q", title="to (ms)", format=",.2f"),
                alt.Tooltip("count:Q", title="requests"),
            ],
        )
    )


def token_gaps(run: RunRecord, request_ordinal: int) -> list[dict[str, Any]]:
    """The gaps between one request's token frames: position (2 for the gap before the second
    token frame), gap_ms, at_ms (arrival since send) and channel; empty below two token frames.

    ``request_ordinal`` indexes ``run.requests``. Frames without a token (role-only, finish,
    usage) are skipped: a gap to one of those says nothing about generation speed.
    """
    if not 0 <= request_ordinal < len(run.requests):
        return []
    record = run.requests[request_ordinal]
    frames = sorted(
        (t, Channel(c))
        for t, c in zip(record.frame_ns, record.frame_channel, strict=True)
        if c != Channel.NONE
    )
    return [
        {
            "position": i + 1,
            "gap_ms": (t - frames[i - 1][0]) / NS_PER_MS,
            "at_ms": t / NS_PER_MS,
            "channel": _CHANNEL_NAMES.get(channel, channel.name.lower()),
        }
        for i, (t, channel) in enumerate(frames)
        if i > 0
    ]


def token_gaps_chart(run: RunRecord, request_ordinal: int) -> alt.LayerChart | None:
    """Inter-token gaps (ms) over token frame position for one request, coloured by channel.

    A chunk may carry several tokens, so positions count frames; a reasoning model's switch from
    thinking to answering shows as a change of colour.
    """
    gaps = token_gaps(run, request_ordinal)
    if not gaps:
        return None
    record = run.requests[request_ordinal]
    level = _level_names(run).get(record.level, f"level {record.level}")
    label = run_labels([run])[run.run_id]
    x = alt.X("position:Q", title="token frame (1 = first token)")
    y = alt.Y("gap_ms:Q", title="gap since previous token frame (ms)")
    base = alt.Chart(alt.Data(values=gaps)).encode(x=x, y=y)
    line = base.mark_line(color="lightgray")
    dots = base.mark_point(filled=True, size=30).encode(
        color=alt.Color("channel:N", title="channel"),
        tooltip=[
            alt.Tooltip("position:Q", title="token frame"),
            alt.Tooltip("gap_ms:Q", title="gap (ms)", format=",.3f"),
            alt.Tooltip("at_ms:Q", title="arrived at (ms since send)", format=",.3f"),
            alt.Tooltip("channel:N", title="channel"),
        ],
    )
    title = f"Inter-token gaps: {label}, request {request_ordinal} ({level})"
    return alt.layer(line, dots).properties(title=title)
