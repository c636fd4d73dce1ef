"""The lines between the app and a benchmark's process: specs round-trip, only benchmark events
are accepted, bad lines are named, and progress is thinned without losing a level's last word."""

from __future__ import annotations

import io
import json

import pytest

from benchmark import worker
from benchmark.records import RequestRecord
from benchmark.runner import LevelTally, Progress
from benchmark.transport import Target
from benchmark.worker import Channel, ProgressThrottle
from benchmark.worker_protocol import (
    ProtocolError,
    RunSpec,
    audit_event,
    audit_message,
    decode_message,
    decode_spec,
    encode_spec,
    progress_view,
)
from benchmark.workload import DepthWorkload, SweepWorkload
from lifecycle.core.events import BenchmarkFinished, BenchmarkStarted, LoadRequested


@pytest.mark.parametrize("workload", [SweepWorkload(concurrency=[1, 4]), DepthWorkload(depths=[0, 4096])])
def test_a_spec_round_trips_with_its_key(workload: SweepWorkload | DepthWorkload) -> None:
    target = Target("http://127.0.0.1:9", "served", api_key="sk-secret", model_id="m", engine="vllm")
    spec = RunSpec("abc123", "sqlite:////tmp/x.db", target, workload, {"engine": "vllm"}, {"id": "m"})
    assert decode_spec(encode_spec(spec)) == spec


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not json",
        "{}",
        json.dumps({"run_id": "a", "db_url": "x", "target": {}, "workload": {"kind": "x"}}),
    ],
)
def test_a_bad_spec_is_named(line: str) -> None:
    with pytest.raises(ProtocolError, match="not a benchmark run spec"):
        decode_spec(line)


def test_audit_messages_carry_benchmark_events_only() -> None:
    started = BenchmarkStarted(run_id="r1", kind="sweep", workload="concurrency 1")
    kind, body = decode_message(json.dumps(audit_message("m", started)))
    assert kind == "audit"
    assert audit_event(body) == ("m", started)
    finished = BenchmarkFinished(run_id="r1", status="complete", summary="1 level")
    assert audit_event(audit_message("m", finished)["audit"]) == ("m", finished)
    # A process may not write a model's other history (a load, an unload) into the app's store.
    forged = {"model_id": "m", "type": LoadRequested.TYPE, "payload": {}}
    with pytest.raises(ProtocolError, match="may not record 'LoadRequested'"):
        audit_event(forged)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Traceback (most recent call last):", "not JSON"),
        ("[1, 2]", "not a message"),
        ('{"progress": {}, "done": {}}', "not a message"),
        ('{"shell": {}}', "unknown message 'shell'"),
        ('{"done": "yes"}', "unknown message 'done'"),
    ],
)
def test_a_bad_message_is_named(line: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_message(line)


def _update(label: str, done: int, total: int | None = 10) -> Progress:
    return Progress(level=0, levels=2, label=label, done=done, total=total, errors=0, elapsed_s=done / 10)


def _sent(out: io.StringIO) -> list[tuple[str, int]]:
    return [
        (m["progress"]["label"], m["progress"]["done"]) for m in map(json.loads, out.getvalue().splitlines())
    ]


def test_progress_is_thinned_but_a_levels_end_and_the_latest_word_always_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(worker.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    throttle = ProgressThrottle(Channel(out))
    for done in range(1, 10):  # nine updates within one interval: only the first goes
        throttle(_update("c1", done))
    assert _sent(out) == [("c1", 1)]
    throttle(_update("c1", 10))  # the level's end goes at once
    throttle(_update("c4", 1))  # another level has its own clock
    throttle(_update("c4", 2))
    assert _sent(out) == [("c1", 1), ("c1", 10), ("c4", 1)]
    now[0] += 2 * worker.PROGRESS_EVERY_S
    throttle(_update("c4", 3))
    throttle(_update("c4", 4, total=None))  # a timed level: never "finished" by count
    throttle.flush()  # the run ended: the latest held update is not lost
    assert _sent(out)[-2:] == [("c4", 3), ("c4", 4)]


def test_a_levels_live_figures_count_answers_and_skip_warmups_and_failures() -> None:
    tally = LevelTally(level=1, levels=3, label="concurrency 4", total=8)
    answered = RequestRecord(1, 0, 0, frame_ns=[0, 7_000_000, 9_000_000], frame_channel=[0, 1, 1],
                             end_ns=10_000_000, completion_tokens=12)  # fmt: skip
    counted_by_frames = RequestRecord(1, 1, 0, frame_ns=[3_000_000, 4_000_000], frame_channel=[1, 1],
                                      end_ns=5_000_000)  # fmt: skip
    failed = RequestRecord(1, 2, 0, error_class="HTTP 503", error="busy")
    for record in (answered, counted_by_frames, failed):
        tally.count(record)
    assert (tally.done, tally.errors, tally.output_tokens, tally.last_ttft_ms) == (3, 1, 14, 3.0)
    live = Progress(level=1, levels=3, label="concurrency 4", done=3, total=8, errors=1, elapsed_s=2.0,
                    last_ttft_ms=3.0, output_tokens=14)  # fmt: skip
    view = progress_view(live)
    assert (view["output_tokens_per_s"], view["eta_s"]) == (7.0, 3.3)
