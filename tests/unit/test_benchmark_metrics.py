"""benchmark.metrics and benchmark.depth_metrics on hand-made timelines with known answers.

Times are written in ms for reading and stored in ns, as the runner stores them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from benchmark.depth_metrics import depth_cell_summary, pp_tps, processed_prompt_tokens, tg_tps
from benchmark.metrics import (
    UserLimits,
    itl_ns,
    level_summary,
    output_length_honoured,
    output_tokens,
    reconcile_tokens,
    request_metrics,
    run_summary,
    runner_health,
    send_slip_ms,
    ttfa_ns,
    ttft_ns,
)
from benchmark.records import Channel, RequestRecord, RunRecord

MS = 1_000_000
N, C, R = Channel.NONE, Channel.CONTENT, Channel.REASONING


def rec(
    frames: Sequence[tuple[float, Channel]] = (),
    *,
    end: float | None = None,
    sent: float | None = 0.0,
    headers: float | None = 1.0,
    completion: int | None = None,
    error: str | None = None,
    warmup: bool = False,
    level: int = 0,
    intended: float = 0.0,
    **fields: object,
) -> RequestRecord:
    """A request whose frames arrive at the given ms offsets; ends at ``end`` or the last frame."""
    if end is None and error is None:
        end = max((t for t, _ in frames), default=0.0) + 1.0
    r = RequestRecord(
        level=level,
        seq=0,
        intended_ns=int(intended * MS),
        sent_ns=None if sent is None else int(sent * MS),
        warmup=warmup,
        headers_ns=None if headers is None else int(headers * MS),
        frame_ns=[int(t * MS) for t, _ in frames],
        frame_bytes=[100] * len(frames),
        frame_channel=[int(c) for _, c in frames],
        end_ns=None if end is None else int(end * MS),
        completion_tokens=completion,
        error_class=error,
    )
    for name, value in fields.items():
        setattr(r, name, value)
    return r


def content(first: float, count: int, step: float) -> list[tuple[float, Channel]]:
    return [(first + i * step, C) for i in range(count)]


# --- per request -------------------------------------------------------------------------------


def test_a_role_only_first_frame_is_a_byte_but_not_a_token() -> None:
    r = rec([(5, N), (20, C), (30, C), (40, N)], end=45, headers=3, completion=2)
    m = request_metrics(r)
    # TTFR is the first frame (role-only here), not the headers at 3 ms: servers send those at once.
    assert (m.ttfr_ns, m.ttft_ns, m.ttfa_ns, m.e2e_ns) == (5 * MS, 20 * MS, 20 * MS, 45 * MS)
    assert output_tokens(rec([(5, N), (20, C), (30, C), (40, N)])) == (2, False)


def test_reasoning_then_content_separates_ttft_from_ttfa() -> None:
    r = rec([(2, N), (10, R), (20, R), (50, C), (60, C)], completion=4)
    assert ttft_ns(r) == 10 * MS
    assert ttfa_ns(r) == 50 * MS
    only_reasoning = rec([(10, R)])
    assert ttfa_ns(only_reasoning) is None


def test_usage_beats_chunk_counts_and_the_fallback_is_flagged() -> None:
    # Three chunks carrying ten tokens: ITL must use 10, not 3.
    frames = [(100, C), (400, C), (1000, C)]
    r = rec(frames, end=1000, completion=10)
    assert output_tokens(r) == (10, True)
    assert itl_ns(r) == pytest.approx(900 * MS / 9)
    assert request_metrics(r).tokens_per_s == pytest.approx(1000 / 100)
    no_usage = rec(frames, end=1000)
    assert output_tokens(no_usage) == (3, False)
    assert itl_ns(no_usage) == pytest.approx(900 * MS / 2)
    assert request_metrics(no_usage).tokens_from_usage is False


def test_itl_is_undefined_below_two_tokens() -> None:
    one = rec([(50, C)], end=60, completion=1)
    assert itl_ns(one) is None
    assert request_metrics(one).tokens_per_s is None
    assert itl_ns(rec([(5, N)], end=10, completion=0)) is None


# --- a level -----------------------------------------------------------------------------------


def known_level() -> list[RequestRecord]:
    """Two successes, one failure, one warm-up that would stretch the window if it counted."""
    return [
        rec(
            [(0, N), (50, R), *content(100, 10, 100)], end=1000, completion=10, headers=40
        ),  # TTFT 50, ITL 950/9 ms
        rec(content(200, 10, 50), sent=500, end=1100, completion=10),  # ITL 100 ms, completes at 1600
        rec(sent=200, end=10, error="HTTP 503", status=503),
        rec(content(10, 3, 10), sent=0, end=10_000, completion=3, warmup=True),
    ]


def test_level_throughputs_over_first_send_to_last_completion() -> None:
    s = level_summary(known_level())
    assert (s["n"], s["completed"], s["errors"], s["warmup_excluded"]) == (3, 2, 1, 1)
    assert s["error_rate"] == pytest.approx(1 / 3)
    assert s["error_classes"] == {"HTTP 503": 1}
    assert s["duration_s"] == pytest.approx(1.6)
    assert s["output_tokens_per_s"] == pytest.approx(20 / 1.6)
    assert s["requests_per_s"] == pytest.approx(2 / 1.6)
    assert s["ttft_ms"]["p50"] == pytest.approx(125.0)  # 50 (reasoning) and 200
    assert s["ttfa_ms"]["p50"] == pytest.approx(150.0)  # 100 and 200
    assert s["ttfr_ms"]["p50"] == pytest.approx(100.0)  # first frames at 0 and 200
    assert s["itl_ms"]["mean"] == pytest.approx((950 / 9 + 100) / 2)
    assert s["e2e_ms"]["p50"] == pytest.approx(1050.0)
    assert s["tokens_from_usage"] is True
    assert s["goodput_per_s"] is None  # no limits, no goodput


def test_goodput_keeps_failures_in_the_denominator() -> None:
    s = level_summary(known_level(), UserLimits(ttft_ms=150))
    assert s["good_requests"] == 1  # the first request; the second is at 200 ms, the failure never
    assert s["goodput_per_s"] == pytest.approx(1 / 1.6)
    strict = level_summary(known_level(), {"ttft_ms": 150, "itl_ms": 50})
    assert (strict["good_requests"], strict["goodput_per_s"]) == (0, 0.0)
    loose = level_summary(known_level(), {"ttft_ms": 1000, "itl_ms": 1000})
    assert loose["good_requests"] == 2  # 2 of 3 attempted: the 503 counts against it
    assert level_summary(known_level(), {"ttft_ms": None, "itl_ms": None})["goodput_per_s"] is None


def test_a_limit_that_cannot_be_measured_is_not_met() -> None:
    one_token = rec([(10, C)], end=20, completion=1)
    assert level_summary([one_token], {"itl_ms": 100})["good_requests"] == 0
    assert level_summary([one_token], {"ttft_ms": 100})["good_requests"] == 1


def test_warm_ups_are_excluded_from_every_figure() -> None:
    with_warmup = level_summary(known_level())
    without = level_summary([r for r in known_level() if not r.warmup])
    for key in ("ttft_ms", "itl_ms", "e2e_ms", "output_tokens_per_s", "duration_s", "n", "reconciliation"):
        assert with_warmup[key] == without[key]


def test_chunk_counted_levels_are_flagged() -> None:
    s = level_summary([rec(content(10, 4, 10)), rec(content(10, 4, 10), completion=8)])
    assert s["tokens_from_usage"] is False
    assert s["requests_counted_from_chunks"] == 1
    assert s["output_tokens_total"] == 12


def test_an_empty_level_gives_none_figures() -> None:
    s = level_summary([], level={"concurrency": 8})
    assert s["concurrency"] == 8
    assert (s["n"], s["errors"], s["error_rate"], s["valid"]) == (0, 0, None, True)
    assert s["ttft_ms"]["p50"] is None
    assert s["output_tokens_per_s"] is None
    assert s["requests_per_s"] is None
    assert s["tokens_from_usage"] is False
    json.dumps(s)


def test_an_all_failed_level_gives_none_latencies_and_full_error_rate() -> None:
    failed = [
        rec(sent=0, end=None, headers=None, error="ServerUnreachable"),
        rec(content(10, 2, 10), sent=5, end=None, error="StreamInterrupted"),
    ]
    s = level_summary(failed, {"ttft_ms": 100})
    assert (s["n"], s["completed"], s["errors"], s["error_rate"]) == (2, 0, 2, 1.0)
    assert s["error_classes"] == {"ServerUnreachable": 1, "StreamInterrupted": 1}
    assert s["ttft_ms"]["p50"] is None
    assert s["itl_ms"]["n"] == 0
    assert s["output_tokens_per_s"] is None  # no request ever completed: no window
    assert s["goodput_per_s"] is None
    assert s["good_requests"] == 0
    json.dumps(s)


def test_requests_never_sent_are_not_failures() -> None:
    s = level_summary([rec(content(10, 2, 10), completion=2), rec(sent=None, end=None, headers=None)])
    assert (s["n"], s["errors"], s["not_sent"], s["error_rate"]) == (1, 0, 1, 0.0)


def test_summary_has_the_cli_json_shape() -> None:
    s = level_summary(known_level(), level={"concurrency": 8}, health={"valid": True, "reason": None})
    assert next(iter(s)) == "concurrency"
    assert s["valid"] is True
    for key in ("ttft_ms", "ttfa_ms", "itl_ms", "e2e_ms"):
        assert {"p50", "p90", "p99", "mean", "sd", "n", "p50_ci"} <= s[key].keys()
    for key in ("output_tokens_per_s", "requests_per_s", "errors"):
        assert isinstance(s[key], int | float)
    assert json.loads(json.dumps(s)) == s
    rate = level_summary(known_level(), level={"rate": 2.5}, health={"valid": False, "reason": "lag"})
    assert (rate["rate"], rate["valid"], rate["invalid_reason"]) == (2.5, False, "lag")


# --- reconciliation and honoured lengths -------------------------------------------------------


def test_reconciliation_flags_a_gap_over_five_percent_with_the_figures() -> None:
    # usage 100 tokens, but only 90 token frames: servers that pack several tokens per chunk.
    reqs = [rec(content(10, 45, 1), completion=50), rec(content(10, 45, 1), completion=50)]
    r = reconcile_tokens(reqs)
    assert (r["usage_tokens"], r["frame_tokens"], r["flagged"]) == (100, 90, True)
    assert r["max_gap"] == pytest.approx(0.10)
    assert r["reason"] is not None
    assert r["reason"] == "usage says 100 tokens, token frames 90 (10% gap)"
    close = reconcile_tokens([rec(content(10, 97, 1), completion=100)])
    assert (close["flagged"], close["reason"]) == (False, None)
    assert close["max_gap"] == pytest.approx(0.03)


def test_reconciliation_with_a_tokenize_count() -> None:
    reqs = [rec(content(10, 100, 1), completion=100)]
    flagged = reconcile_tokens(reqs, tokenize_tokens=120)
    assert flagged["flagged"] is True
    assert flagged["reason"] == "usage says 100 tokens, /tokenize 120 (20% gap)"
    assert reconcile_tokens(reqs, tokenize_tokens=104)["flagged"] is False
    # Without usage, /tokenize is the reference for the frame count.
    no_usage = reconcile_tokens([rec(content(10, 80, 1))], tokenize_tokens=100)
    assert (no_usage["usage_tokens"], no_usage["requests_without_usage"], no_usage["flagged"]) == (
        None,
        1,
        True,
    )
    nothing = reconcile_tokens([])
    assert (nothing["usage_tokens"], nothing["frame_tokens"], nothing["flagged"]) == (None, 0, False)


def test_reconciliation_ignores_failures_and_warm_ups() -> None:
    reqs = [
        rec(content(10, 10, 1), completion=10),
        rec(content(10, 2, 1), completion=50, warmup=True),
        rec(content(10, 2, 1), end=None, error="StreamInterrupted", completion=50),
    ]
    assert reconcile_tokens(reqs)["usage_tokens"] == 10
    assert level_summary(reqs)["reconciliation"]["flagged"] is False


def test_output_length_honoured_counts_exact_matches() -> None:
    reqs = [
        rec(content(10, 2, 1), completion=10, requested_output_tokens=10),
        rec(content(10, 2, 1), completion=10, requested_output_tokens=10),
        rec(content(10, 2, 1), completion=7, requested_output_tokens=10),
        rec(content(10, 2, 1), requested_output_tokens=10),  # no usage: cannot judge
        rec(content(10, 2, 1), completion=3),  # no requested length
    ]
    assert output_length_honoured(reqs) == {"n": 3, "fraction": pytest.approx(2 / 3)}
    assert output_length_honoured([]) == {"n": 0, "fraction": None}
    assert level_summary(reqs)["output_length_honoured"]["n"] == 3


# --- runner health -----------------------------------------------------------------------------


def test_runner_health_voids_a_level_with_the_figure() -> None:
    bad = runner_health([7.2] * 100, [0.1] * 10)
    assert bad["valid"] is False
    assert bad["reason"] == "client event-loop lag p99 7.2 ms > 5 ms"
    assert bad["lag_p99_ms"] == pytest.approx(7.2)
    slip = runner_health([0.5] * 100, [12.0] * 10)
    assert (slip["valid"], slip["reason"]) == (False, "send slip p99 12.0 ms > 10 ms")
    both = runner_health([6.0], [11.0])
    assert both["reason"] == "client event-loop lag p99 6.0 ms > 5 ms; send slip p99 11.0 ms > 10 ms"
    good = runner_health([0.5] * 99 + [4.0], [1.0, 2.0])
    assert (good["valid"], good["reason"]) == (True, None)
    assert runner_health([], []) == {"lag_p99_ms": None, "slip_p99_ms": None, "valid": True, "reason": None}


def test_send_slip_is_recomputed_from_the_timeline() -> None:
    reqs = [rec(sent=12, intended=10), rec(sent=None, intended=20), rec(sent=30.5, intended=30)]
    assert send_slip_ms(reqs) == pytest.approx([2.0, 0.5])


# --- depth mode --------------------------------------------------------------------------------


def test_pp_takes_off_the_floor_and_the_cached_tokens() -> None:
    # 4096 tokens of context from the prefix cache, 2048 new: 2048 tokens in 220 - 20 ms.
    r = rec(content(220, 33, 10), completion=33, prompt_tokens=6144, cached_tokens=4096)
    assert processed_prompt_tokens(r) == 2048
    assert pp_tps(r, 20 * MS) == pytest.approx(2048 / 0.2)
    uncached = rec(content(220, 2, 10), prompt_tokens=2048)  # cached_tokens None: all processed
    assert pp_tps(uncached, 20 * MS) == pytest.approx(2048 / 0.2)
    assert pp_tps(r, 220 * MS) is None  # no prompt time left after the floor
    assert pp_tps(rec(content(220, 2, 10)), 0) is None  # no usage prompt count


def test_tg_runs_from_the_first_to_the_last_token_frame() -> None:
    r = rec([(5, N), *content(220, 33, 10), (600, N)], completion=33)  # 32 tokens over 320 ms
    assert tg_tps(r) == pytest.approx(32 / 0.32)
    chunky = rec(content(220, 5, 80), completion=33)  # 33 tokens in 5 chunks over 320 ms
    assert tg_tps(chunky) == pytest.approx(32 / 0.32)
    assert tg_tps(rec([(220, C)], completion=1)) is None


def test_depth_cell_mean_and_sd_over_runs() -> None:
    def run(step: float) -> RequestRecord:
        return rec(
            content(220, 33, step),
            completion=33,
            prompt_tokens=6144,
            cached_tokens=4096,
            server_timings={"prompt_per_second": 10_000.0, "predicted_per_second": 101.0},
        )

    runs = [run(10), run(5), rec(sent=0, end=None, error="HTTP 500")]  # tg 100 and 200 t/s
    s = depth_cell_summary(runs, 20 * MS, cell={"pp": 2048, "tg": 32, "depth": 4096})
    assert (s["pp"], s["tg"], s["depth"]) == (2048, 32, 4096)
    assert (s["n"], s["completed"], s["errors"]) == (3, 2, 1)
    assert s["pp_tps"] == {"n": 2, "mean": pytest.approx(10_240.0), "sd": pytest.approx(0.0)}
    assert s["tg_tps"]["mean"] == pytest.approx(150.0)
    assert s["tg_tps"]["sd"] == pytest.approx(70.710678, rel=1e-6)
    assert s["server_tg_tps"]["mean"] == pytest.approx(101.0)
    assert s["cached_tokens"]["mean"] == 4096
    assert s["latency_floor_ms"] == 20.0
    assert s["tokens_from_usage"] is True
    json.dumps(s)


def test_an_empty_depth_cell_gives_none_figures() -> None:
    s = depth_cell_summary([], 0, cell={"pp": 512, "tg": 32, "depth": 0})
    assert s["pp_tps"] == {"n": 0, "mean": None, "sd": None}
    assert s["tg_tps"]["mean"] is None
    json.dumps(s)


# --- a whole run -------------------------------------------------------------------------------


def test_run_summary_for_a_sweep_reads_levels_limits_and_health_from_the_run() -> None:
    run = RunRecord(
        run_id="r1",
        kind="sweep",
        base_url="http://127.0.0.1:1",
        workload={"kind": "sweep", "concurrency": [1, 8, 64], "limits": {"ttft_ms": 150, "itl_ms": None}},
        started_at=0.0,
        health=[
            {"lag_p99_ms": 0.4, "slip_p99_ms": 0.2, "valid": True, "reason": None},
            {"lag_p99_ms": 7.2, "slip_p99_ms": 0.2, "valid": False, "reason": "lag"},
        ],
        requests=[*known_level(), *(rec(content(10, 4, 10), completion=4, level=1) for _ in range(3))],
    )
    out = run_summary(run)
    assert list(out) == ["run_id", "levels"]
    assert out["run_id"] == "r1"
    assert [lv["concurrency"] for lv in out["levels"]] == [1, 8, 64]
    assert [lv["valid"] for lv in out["levels"]] == [True, False, True]
    assert out["levels"][0]["goodput_per_s"] == pytest.approx(1 / 1.6)
    assert out["levels"][2]["n"] == 0  # a level the run never reached
    json.dumps(out)
    rates = run_summary(run, level_params=[{"rate": 1.0}, {"rate": 2.0}])
    assert [lv["rate"] for lv in rates["levels"]] == [1.0, 2.0]


def test_run_summary_for_depth_names_cells_in_the_runners_order() -> None:
    workload_mod = pytest.importorskip("benchmark.workload")
    workload = workload_mod.DepthWorkload(pp=[512, 2048], tg=[32], depths=[0, 4096], runs=2)
    requests = [
        rec(content(100, 33, 10), completion=33, prompt_tokens=512, level=i)
        for i in range(len(workload.cells()))
        for _ in range(2)
    ]
    run = RunRecord(
        run_id="d1",
        kind="depth",
        base_url="http://127.0.0.1:1",
        workload=workload.model_dump(mode="json"),
        started_at=0.0,
        requests=requests,
    )
    out = run_summary(run, latency_floor_ns=0)
    assert list(out) == ["run_id", "cells"]
    assert [(c["pp"], c["tg"], c["depth"]) for c in out["cells"]] == workload.cells()
    assert all(c["pp_tps"]["n"] == 2 and c["tg_tps"]["mean"] == pytest.approx(100.0) for c in out["cells"])
    json.dumps(out)
