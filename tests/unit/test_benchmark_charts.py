"""ui.benchmark_charts and ui.benchmark_tables on hand-made runs with known answers.

The runs' summaries come from benchmark.metrics.run_summary over hand-made timelines, so the
charts are tested against the same shape the runner stores. Times are written in ms, stored in ns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from benchmark.metrics import run_summary
from benchmark.records import Channel, RequestRecord, RunRecord, RunStatus
from ui.benchmark_charts import (
    depth_chart,
    excluded_levels,
    itl_chart,
    throughput_chart,
    token_gaps,
    token_gaps_chart,
    tradeoff_chart,
    ttft_chart,
    ttft_histogram,
)
from ui.benchmark_tables import (
    METRIC_HELP,
    compare_view,
    comparison_rows,
    depth_rows,
    run_labels,
    run_markdown,
    sweep_markdown,
    sweep_rows,
    verdicts,
)

MS = 1_000_000
N, C, R = Channel.NONE, Channel.CONTENT, Channel.REASONING
CONCURRENCY = [1, 4, 64]
LAG = "client event-loop lag p99 7.2 ms > 5 ms"


def request(
    level: int, seq: int, ttft: float, itl: float, tokens: int = 8, *, warmup: bool = False
) -> RequestRecord:
    """A streamed reply: a role-only frame, ``tokens`` content frames ``itl`` ms apart, a finish frame."""
    frames = [(ttft - 1, N)] + [(ttft + i * itl, C) for i in range(tokens)]
    frames.append((frames[-1][0] + 0.5, N))
    return RequestRecord(
        level=level,
        seq=seq,
        intended_ns=seq * MS,
        sent_ns=seq * MS,
        warmup=warmup,
        frame_ns=[int(t * MS) for t, _ in frames],
        frame_bytes=[50] * len(frames),
        frame_channel=[int(c) for _, c in frames],
        end_ns=int((frames[-1][0] + 0.5) * MS),
        completion_tokens=tokens,
        prompt_tokens=512,
        status=200,
    )


def sweep_run(
    run_id: str,
    model: str,
    ttft: float,
    itl: float,
    *,
    seed: int,
    per_level: int = 40,
    invalid: int | None = None,
    axis: str = "concurrency",
) -> RunRecord:
    """A sweep whose TTFT and ITL scatter (lognormal, 10%) around ``ttft`` and ``itl`` ms,
    growing with the level; level ``invalid`` is voided by the runner's own lag."""
    rng = np.random.default_rng(seed)
    requests = []
    for level, load in enumerate(CONCURRENCY):
        scale = 1 + load / 16  # heavier load, slower replies
        for seq in range(per_level):
            requests.append(
                request(level, seq, ttft * scale * rng.lognormal(0, 0.1), itl * scale * rng.lognormal(0, 0.1))
            )
    requests.append(request(0, 99, 5000, 50, warmup=True))  # warm-ups count in no figure
    failed = request(1, 98, 10, 1)
    failed.error_class, failed.end_ns = "StreamInterrupted", None
    requests.append(failed)
    health = [{"lag_p99_ms": 0.3, "slip_p99_ms": 0.1, "valid": True, "reason": None} for _ in CONCURRENCY]
    if invalid is not None:
        health[invalid] = {"lag_p99_ms": 7.2, "slip_p99_ms": 0.1, "valid": False, "reason": LAG}
    workload = {"concurrency": CONCURRENCY} if axis == "concurrency" else {"rates": CONCURRENCY}
    run = RunRecord(
        run_id=run_id,
        kind="sweep",
        base_url="http://127.0.0.1:9",
        workload={**workload, "limits": {"ttft_ms": 10_000}},
        started_at=1_700_000_000.0,
        model_id=model,
        engine="nim",
        status=RunStatus.INVALID if invalid is not None else RunStatus.COMPLETE,
        health=health,
        requests=requests,
    )
    run.results = run_summary(run)
    return run


def depth_run(run_id: str, model: str, ttft: float, itl: float) -> RunRecord:
    """pp512 tg32 at depths 0 and 4096, three repetitions each; deeper context, slower."""
    requests = []
    for level, depth in enumerate((0, 4096)):
        slow = 1 + depth / 4096
        for seq, wobble in enumerate((0.95, 1.0, 1.05)):
            requests.append(request(level, seq, ttft * slow * wobble, itl * slow * wobble, tokens=32))
    run = RunRecord(
        run_id=run_id,
        kind="depth",
        base_url="http://127.0.0.1:9",
        workload={"pp": [512], "tg": [32], "depths": [0, 4096]},
        started_at=1_700_000_000.0,
        model_id=model,
        engine="llamacpp",
        status=RunStatus.COMPLETE,
        requests=requests,
    )
    run.results = run_summary(run)
    return run


@pytest.fixture(scope="module")
def big() -> RunRecord:
    return sweep_run("aaaa1111bbbb", "gpt-oss-120b", ttft=200, itl=20, seed=1)


@pytest.fixture(scope="module")
def small() -> RunRecord:
    # Concurrency 64 (level 2) broke the runner's lag limit: it must never be drawn.
    return sweep_run("cccc2222dddd", "gpt-oss-20b", ttft=100, itl=10, seed=2, invalid=2)


@pytest.fixture(scope="module")
def runs(big: RunRecord, small: RunRecord) -> list[RunRecord]:
    return [big, small]


def chart_rows(chart: Any) -> list[dict[str, Any]]:
    """Every data row in a chart's Vega-Lite spec, inline or in named datasets."""
    spec = chart.to_dict()  # also validates the spec against the Vega-Lite schema

    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "values" and isinstance(value, list) and value and isinstance(value[0], dict):
                    yield from value
                elif key == "datasets":
                    for rows in value.values():
                        yield from rows
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return list(walk(spec))


def models_in(rows: Sequence[dict[str, Any]]) -> set[str]:
    return {row["model"] for row in rows if "model" in row}


# --- sweep charts --------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [throughput_chart, ttft_chart, itl_chart, tradeoff_chart])
def test_sweep_charts_overlay_both_models_and_never_draw_an_invalid_level(build: Any, runs, small) -> None:
    rows = chart_rows(build(runs))
    assert models_in(rows) == {"gpt-oss-120b", "gpt-oss-20b"}
    assert not [r for r in rows if r.get("run") == small.run_id and r.get("x") == 64]
    # The valid levels of both runs are there: the invalid one is the only gap.
    drawn = {(r["model"], r["x"]) for r in rows if "x" in r}
    assert drawn == {("gpt-oss-120b", 1), ("gpt-oss-120b", 4), ("gpt-oss-120b", 64)} | {
        ("gpt-oss-20b", 1),
        ("gpt-oss-20b", 4),
    }


def color_encodings(spec: Any) -> Iterator[dict[str, Any]]:
    """The colour encoding of every mark in a spec, layers and panels included."""
    if isinstance(spec, dict):
        if isinstance(spec.get("encoding"), dict) and "color" in spec["encoding"]:
            yield spec["encoding"]["color"]
        for key, value in spec.items():
            if key != "encoding":
                yield from color_encodings(value)
    elif isinstance(spec, list):
        for item in spec:
            yield from color_encodings(item)


@pytest.mark.parametrize(
    "build", [throughput_chart, ttft_chart, itl_chart, tradeoff_chart, ttft_histogram, depth_chart]
)
def test_legends_are_drawn_at_full_opacity_even_over_translucent_marks(build: Any, runs) -> None:
    chart = build([depth_run("d1", "m", 100, 10)] if build is depth_chart else runs)
    colors = [c for c in color_encodings(chart.to_dict()) if c.get("field") == "model"]
    assert colors
    # Vega-Lite gives a legend symbol its mark's opacity; the CI bands' 0.2 made the legend faint.
    for color in colors:
        assert (color["legend"]["symbolOpacity"], color["legend"]["labelOpacity"]) == (1, 1), color


@pytest.mark.parametrize("build", [ttft_chart, itl_chart])
def test_ci_bands_stay_translucent(build: Any, runs) -> None:
    layers = build(runs).to_dict()["layer"]
    (band,) = [layer["mark"] for layer in layers if layer["mark"]["type"] == "area"]
    assert band["opacity"] < 0.5


def test_the_percentile_legend_shows_the_dashes_not_the_points(runs) -> None:
    layers = ttft_chart(runs).to_dict()["layer"]
    (lines,) = [layer for layer in layers if layer["mark"]["type"] == "line"]
    # Points on the dashed lines themselves turned the legend's entries into identical dots.
    assert not lines["mark"].get("point")
    assert lines["encoding"]["strokeDash"]["legend"]["symbolType"] == "stroke"
    assert [layer for layer in layers if layer["mark"]["type"] == "point"]  # the points, apart


def test_sweep_chart_axes_say_what_and_in_which_unit(runs) -> None:
    spec = throughput_chart(runs).to_dict()
    assert spec["encoding"]["x"]["title"].startswith("concurrency")
    assert spec["encoding"]["x"]["scale"]["type"] == "log"
    assert "tokens/s" in spec["encoding"]["y"]["title"]
    assert spec["title"]
    ttft = ttft_chart(runs).to_dict()
    marks = [
        layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in ttft["layer"]
    ]
    assert "area" in marks  # the p50's CI band
    assert all("(ms)" in layer["encoding"]["y"]["title"] for layer in ttft["layer"])


def test_a_rate_sweep_plots_rate_on_a_linear_axis() -> None:
    run = sweep_run("eeee3333ffff", "m", ttft=50, itl=5, seed=3, per_level=5, axis="rate")
    x = throughput_chart([run]).to_dict()["encoding"]["x"]
    assert "rate" in x["title"]
    assert "requests/s" in x["title"]
    assert "scale" not in x or x["scale"].get("type") != "log"


def test_ttft_lines_carry_p50_and_p99_and_the_band_the_p50_ci(small) -> None:
    level = small.results["levels"][1]
    rows = [r for r in chart_rows(ttft_chart([small])) if r.get("x") == 4]
    by_stat = {r["stat"]: r["value"] for r in rows if "stat" in r}
    assert by_stat == {"p50": level["ttft_ms"]["p50"], "p99": level["ttft_ms"]["p99"]}
    assert {(r["ttft_lo"], r["ttft_hi"]) for r in rows} == {tuple(level["ttft_ms"]["p50_ci"])}


def test_excluded_levels_name_the_model_the_level_and_the_reason(runs) -> None:
    assert excluded_levels(runs) == [f"gpt-oss-20b concurrency 64: {LAG}"]


def test_a_rate_sweep_beside_a_concurrency_sweep_is_listed_not_silently_dropped(big) -> None:
    rate = sweep_run("eeee3333ffff", "m", ttft=50, itl=5, seed=3, per_level=5, axis="rate")
    lines = excluded_levels([big, rate])
    assert "m rate 4: a rate level, and these charts plot concurrency" in lines
    assert models_in(chart_rows(throughput_chart([big, rate]))) == {"gpt-oss-120b"}


def test_tradeoff_points_are_per_user_speed_against_total_throughput_labelled_by_level(small) -> None:
    points = {r["label"]: r for r in chart_rows(tradeoff_chart([small])) if "label" in r}
    assert set(points) == {"1", "4"}  # 64 is invalid
    for label, level in zip(("1", "4"), small.results["levels"], strict=False):
        assert points[label]["tps_user_p50"] == level["tokens_per_s_per_user"]["p50"]
        assert points[label]["out_tps"] == level["output_tokens_per_s"]
    # Heavier load, each user slower (the hand-made sends don't model the server's total).
    assert points["4"]["tps_user_p50"] < points["1"]["tps_user_p50"]


def test_two_runs_of_one_model_get_a_run_id_suffix(big) -> None:
    again = sweep_run("ffff4444aaaa", "gpt-oss-120b", ttft=200, itl=20, seed=4, per_level=5)
    assert run_labels([big, again]) == {
        "aaaa1111bbbb": "gpt-oss-120b (aaaa11)",
        "ffff4444aaaa": "gpt-oss-120b (ffff44)",
    }
    assert models_in(chart_rows(throughput_chart([big, again]))) == {
        "gpt-oss-120b (aaaa11)",
        "gpt-oss-120b (ffff44)",
    }


def test_nothing_to_draw_gives_none() -> None:
    empty = RunRecord("r", "sweep", "http://x", {"concurrency": [1]}, 0.0, model_id="m")
    for build in (throughput_chart, ttft_chart, itl_chart, tradeoff_chart, depth_chart, ttft_histogram):
        assert build([empty]) is None
    assert token_gaps_chart(empty, 0) is None


# --- depth ---------------------------------------------------------------------------------------


def test_depth_chart_draws_pp_and_tg_against_depth_with_sd_bars() -> None:
    runs = [
        depth_run("d1", "gpt-oss-20b", ttft=100, itl=10),
        depth_run("d2", "gpt-oss-120b", ttft=300, itl=30),
    ]
    chart = depth_chart(runs)
    rows = chart_rows(chart)
    assert models_in(rows) == {"gpt-oss-20b", "gpt-oss-120b"}
    assert {(r["test"], r["depth"]) for r in rows} == {("pp", 0), ("pp", 4096), ("tg", 0), ("tg", 4096)}
    cell = runs[0].results["cells"][0]
    tg = next(r for r in rows if r["run"] == "d1" and r["test"] == "tg" and r["depth"] == 0)
    assert tg["mean"] == cell["tg_tps"]["mean"]
    assert (tg["lo"], tg["hi"]) == pytest.approx((tg["mean"] - tg["sd"], tg["mean"] + tg["sd"]))
    spec = chart.to_dict()
    assert len(spec["hconcat"]) == 2
    marks = {layer["mark"]["type"] for panel in spec["hconcat"] for layer in panel["layer"]}
    assert {"errorbar", "line"} <= marks


def test_an_invalid_depth_cell_is_left_out_and_listed() -> None:
    run = depth_run("d1", "gpt-oss-20b", ttft=100, itl=10)
    run.results["cells"][1].update(valid=False, invalid_reason=LAG)
    assert {r["depth"] for r in chart_rows(depth_chart([run]))} == {0}
    assert excluded_levels([run]) == [f"gpt-oss-20b pp512 tg32 @ d4096: {LAG}"]


# --- per request ---------------------------------------------------------------------------------


def test_ttft_histogram_counts_every_measured_completed_request_on_valid_levels(runs, big, small) -> None:
    rows = chart_rows(ttft_histogram(runs))
    counts = {model: sum(r["count"] for r in rows if r["model"] == model) for model in models_in(rows)}
    # 3 levels x 40 for the 120b; the 20b's invalid level drops out; warm-ups and failures never count.
    assert counts == {"gpt-oss-120b": 120, "gpt-oss-20b": 80}
    # Shared edges, so bars of the two models line up.
    assert len({(r["start"], r["end"]) for r in rows}) <= 30
    at_4 = chart_rows(ttft_histogram(runs, level="concurrency 4"))
    assert sum(r["count"] for r in at_4) == 80


def test_token_gaps_skip_non_token_frames() -> None:
    frames = [(5, N), (10, R), (12, R), (15, C), (19, C), (24, C), (25, N)]
    record = RequestRecord(
        level=0,
        seq=0,
        intended_ns=0,
        sent_ns=0,
        frame_ns=[t * MS for t, _ in frames],
        frame_bytes=[10] * len(frames),
        frame_channel=[int(c) for _, c in frames],
        end_ns=26 * MS,
        completion_tokens=5,
    )
    run = RunRecord("t", "sweep", "http://x", {"concurrency": [1]}, 0.0, model_id="m", requests=[record])
    gaps = token_gaps(run, 0)
    assert [g["gap_ms"] for g in gaps] == [2.0, 3.0, 4.0, 5.0]
    assert [g["position"] for g in gaps] == [2, 3, 4, 5]
    assert [g["channel"] for g in gaps] == ["reasoning", "answer", "answer", "answer"]
    rows = chart_rows(token_gaps_chart(run, 0))
    assert sorted(r["gap_ms"] for r in rows) == [2.0, 3.0, 4.0, 5.0]  # one dataset, shared by the layers
    assert token_gaps(run, 1) == []


def test_a_long_answer_is_not_refused_by_altairs_row_limit() -> None:
    record = request(0, 0, 10, 0.1, tokens=6000)
    run = RunRecord("t", "sweep", "http://x", {"concurrency": [1]}, 0.0, model_id="m", requests=[record])
    assert len(chart_rows(token_gaps_chart(run, 0))) == 5999


# --- tables --------------------------------------------------------------------------------------


def test_every_table_column_has_a_definition(runs, big) -> None:
    rows = [*sweep_rows(big), *depth_rows(depth_run("d1", "m", 100, 10)), *comparison_rows(big, runs[1])]
    assert {key for row in rows for key in row} <= set(METRIC_HELP)
    assert "reasoning" in METRIC_HELP["TTFT p50 (ms)"]
    assert "5 ms" in METRIC_HELP["valid"]
    assert "10 ms" in METRIC_HELP["valid"]


def test_sweep_rows_carry_the_figures_and_the_invalid_reason(small) -> None:
    rows = sweep_rows(small)
    assert [r["level"] for r in rows] == ["concurrency 1", "concurrency 4", "concurrency 64"]
    assert (rows[1]["ok"], rows[1]["errors"]) == (40, 1)
    assert rows[0]["TTFT p50 (ms)"] == round(small.results["levels"][0]["ttft_ms"]["p50"], 2)
    assert (rows[2]["valid"], rows[2]["invalid reason"]) == (False, LAG)
    assert rows[0]["invalid reason"] is None


def test_depth_rows_carry_mean_and_sd() -> None:
    run = depth_run("d1", "gpt-oss-20b", ttft=100, itl=10)
    rows = depth_rows(run)
    assert [(r["pp"], r["tg"], r["depth"]) for r in rows] == [(512, 32, 0), (512, 32, 4096)]
    assert rows[0]["tg t/s"] == round(run.results["cells"][0]["tg_tps"]["mean"], 2)
    assert rows[0]["tg t/s sd"] is not None


def test_a_clear_difference_names_the_faster_model_with_its_ci(big, small) -> None:
    said = verdicts(big, small)  # A = 120b, B = 20b: B is about half the TTFT
    line = next(s for s in said if "first token" in s and "concurrency 4" in s)
    assert line.startswith("gpt-oss-20b is ")
    assert "% faster to first token than gpt-oss-120b at concurrency 4 (CI " in line
    percent = int(line.split(" is ")[1].split("%")[0])
    assert 40 <= percent <= 60
    low, high = line.split("(CI ")[1].rstrip("%)").split("\u2013")
    assert float(low) <= percent <= float(high)
    # Either way round, the faster model is the subject and the figures describe it.
    flipped = next(s for s in verdicts(small, big) if "first token" in s and "concurrency 4" in s)
    assert flipped.startswith(f"gpt-oss-20b is {percent}% faster to first token than gpt-oss-120b")
    # The level the 20b's runner voided gets no verdict (it measured the client), and says why.
    assert len(said) == 2 * 3
    assert not [s for s in said if "concurrency 64" in s]
    assert compare_view(big, small).left_out == [f"concurrency 64: gpt-oss-20b's run voided it: {LAG}"]
    both = sweep_run("abab5555cdcd", "gpt-oss-20b", ttft=100, itl=10, seed=5, per_level=5, invalid=2)
    assert compare_view(small, both).left_out == [
        f"concurrency 64: gpt-oss-20b (cccc22)'s run voided it: {LAG}; "
        f"gpt-oss-20b (abab55)'s run voided it: {LAG}"
    ]


def test_two_samples_of_one_distribution_read_no_significant_difference(big) -> None:
    twin = sweep_run("9999eeee8888", "gpt-oss-120b", ttft=200, itl=20, seed=11)
    said = verdicts(big, twin)
    line = next(s for s in said if "first token" in s and "concurrency 4" in s)
    assert line.startswith(
        "no significant difference in time to first token between gpt-oss-120b (9999ee) "
        "and gpt-oss-120b (aaaa11) at concurrency 4"
    )


def test_comparison_rows_hold_the_figures_behind_the_verdict(big, small) -> None:
    rows = comparison_rows(big, small)
    row = next(r for r in rows if r["level"] == "concurrency 4" and r["metric"] == "TTFT (ms)")
    assert row["B p50"] < row["A p50"]
    assert row["CI low %"] <= row["delta %"] <= row["CI high %"] < 0
    assert row["verdict"].startswith("gpt-oss-20b is ")
    assert {r["level"] for r in rows} == {"concurrency 1", "concurrency 4"}  # 64 is voided


def test_markdown_tables_for_a_forum_post(small) -> None:
    text = sweep_markdown(small)
    lines = text.splitlines()
    assert lines[0].startswith("**gpt-oss-20b** (nim)")
    assert lines[2].startswith("| level |")
    assert len(lines) == 4 + 3
    assert f"| no: {LAG} |" in lines[-1]
    depth = depth_run("d1", "gpt-oss-20b", ttft=100, itl=10)
    assert "| pp512 @ d4096 |" in run_markdown(depth)
    assert run_markdown(small) == text
