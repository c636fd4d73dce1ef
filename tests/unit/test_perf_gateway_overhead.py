"""The pure sums of perf.gateway_overhead: coalesced frames, frames per read, paired figures."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from benchmark.records import Channel, RequestRecord
from perf.gateway_overhead import (
    batch_stretch,
    coalesced,
    coalesced_verdict,
    diff,
    frames_per_read,
    gain,
    net_app_cpu_us_per_frame,
    paired,
    stalls,
)

MS = 1_000_000


def _record(frame_ns: list[int]) -> RequestRecord:
    record = RequestRecord(level=0, seq=0, intended_ns=0)
    record.frame_ns = frame_ns
    record.frame_channel = [Channel.CONTENT] * len(frame_ns)
    return record


def test_coalesced_counts_frames_of_a_shared_read_and_near_ones() -> None:
    # 20 ms apart, then two frames in one read (same stamp), then one 0.1 ms after its neighbour.
    arrivals = [0, 20 * MS, 20 * MS, 40 * MS, 40 * MS + MS // 10]
    assert coalesced(arrivals, 1) == 1  # the shared read only
    assert coalesced(arrivals, int(0.2 * MS)) == 2
    assert coalesced([], 1) == 0
    assert coalesced([5], 1) == 0


def test_frames_per_read_divides_frames_by_distinct_stamps() -> None:
    records = [_record([1, 2, 2, 3]), _record([7, 7])]
    assert frames_per_read(records) == pytest.approx(6 / 4, abs=1e-3)
    assert frames_per_read([]) is None


def _runs(direct: list[dict[str, Any]], gateway: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {"direct": direct, "gateway": gateway}


def test_paired_figures_are_per_repeat_then_median() -> None:
    runs = _runs(
        [{"ttft": 100.0, "tps": 1000.0}, {"ttft": 110.0, "tps": 800.0}, {"ttft": 100.0, "tps": None}],
        [{"ttft": 101.0, "tps": 990.0}, {"ttft": 113.0, "tps": 800.0}, {"ttft": 102.0, "tps": 700.0}],
    )
    assert paired(runs, diff("ttft")) == (2.0, [1.0, 3.0, 2.0])
    # A missing figure leaves its repeat out of the median, not the whole result.
    assert paired(runs, gain("tps")) == (0.995, [0.99, 1.0, None])


def test_net_app_cpu_takes_off_what_the_app_spends_idle() -> None:
    direct = {"app_cpu_share": 0.01}
    gateway = {"app_cpu_s": 0.5, "wall_s": 10.0, "frames_all": 2000}
    # 0.5 s in all, 0.1 s of it idle work: 0.4 s over 2000 frames.
    assert net_app_cpu_us_per_frame(direct, gateway) == 200.0
    assert net_app_cpu_us_per_frame(direct, {**gateway, "frames_all": 0}) is None


def test_batch_stretch_follows_the_simulators_rule_up_to_its_batch() -> None:
    args = argparse.Namespace(batch_slowdown=0.03, max_batch=64)
    assert batch_stretch(1, args) == 1.0
    assert batch_stretch(64, args) == pytest.approx(2.89)
    assert batch_stretch(128, args) == pytest.approx(2.89)  # the rest wait: the batch stays 64
    assert batch_stretch(8, argparse.Namespace(batch_slowdown=0.1, max_batch=0)) == pytest.approx(1.7)


def test_stalls_count_hold_ups_long_enough_to_bunch_two_paced_frames() -> None:
    # A 5 ms tick woke 0.3, 14 and 16 ms late; with a 20 ms ITL only a hold-up of 15 ms or more
    # (the late wake plus the tick) could keep two frames for one read.
    assert stalls([0.3, 14.0, 16.0], itl_ms=20.0) == 1
    assert stalls([], itl_ms=20.0) == 0


def test_coalescing_is_judged_only_where_our_client_never_stalled() -> None:
    def run(same_read: int, stalls: int) -> dict[str, Any]:
        return {
            "coalesced_same_read": same_read,
            "coalesced_within": same_read,
            "token_frames": 100,
            "client_stalls": stalls,
        }

    # Repeat 1: our client stalled in the gateway run, so its 40 prove nothing about the gateway.
    runs = _runs([run(0, 0), run(3, 0)], [run(40, 2), run(0, 0)])
    verdict = coalesced_verdict(runs)
    assert verdict["gateway_same_read"] == 40
    assert verdict["gateway_without_client_stall"] == 0
    assert verdict["direct_without_client_stall"] == 3
    assert verdict["met"] is True
    assert coalesced_verdict(_runs([run(0, 0)], [run(1, 0)]))["met"] is False
    assert coalesced_verdict(_runs([run(0, 0)], [run(0, 5)]))["met"] is None  # nothing to judge
