"""What a run keeps of each request: raw arrival timelines, from which every metric is computed.

Times are integer nanoseconds from ``time.perf_counter_ns()``. A request's own
times are offsets from the moment it was sent, so a timeline means the same
thing wherever it is read; ``intended_ns`` and ``sent_ns`` are offsets from the
start of the run, so send slip and run-level throughput can be recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Channel(IntEnum):
    """What a stream frame carried. Frames without tokens still count as bytes (TTFR)."""

    NONE = 0  # role-only first frame, finish frame, usage frame
    CONTENT = 1  # answer text
    REASONING = 2  # the model's thinking, before the answer


@dataclass
class RequestRecord:
    """One request as it happened. Filled in by the runner, read by the metrics."""

    level: int  # index into the workload's levels (or depth cells)
    seq: int  # order of sending within the level
    intended_ns: int  # when it should have gone out, from the run's start
    sent_ns: int | None = None  # when it did go out, from the run's start; None if never sent
    warmup: bool = False  # warm-up requests are kept but excluded from every figure
    requested_output_tokens: int | None = None
    requested_prompt_tokens: int | None = None
    # From the moment it was sent:
    headers_ns: int | None = None  # response headers received (servers send them on arrival)
    frame_ns: list[int] = field(default_factory=list)  # each SSE frame's arrival
    frame_bytes: list[int] = field(default_factory=list)
    frame_channel: list[int] = field(default_factory=list)  # Channel values
    end_ns: int | None = None  # the stream ended ([DONE] or close); None if it never did
    # The server's own counts (streamed usage), when it sent them:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    status: int | None = None  # HTTP status
    error_class: str | None = None  # e.g. "ServerUnreachable", "HTTP 503", "StreamInterrupted"
    error: str | None = None
    # llama.cpp's own timings block, kept whole so pp/tg can be checked against the server's view.
    server_timings: dict[str, Any] | None = None
    # Held in memory for token reconciliation (/tokenize), never stored.
    text: str = field(default="", repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error_class is None and self.end_ns is not None

    def token_frames(self) -> list[int]:
        """Arrival offsets of the frames that carried text on either channel."""
        return [t for t, c in zip(self.frame_ns, self.frame_channel, strict=True) if c != Channel.NONE]

    def content_frames(self) -> list[int]:
        return [t for t, c in zip(self.frame_ns, self.frame_channel, strict=True) if c == Channel.CONTENT]


# What the server said about a request, field by field: stored as columns, exported as is.
OUTCOME_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "finish_reason",
    "status",
    "error_class",
    "error",
)


class RunStatus:
    RUNNING = "running"
    COMPLETE = "complete"
    PARTIAL = "partial"  # cancelled, or cut short (the model went away mid-run)
    INVALID = "invalid"  # finished, but a level broke the runner's own health limits
    FAILED = "failed"  # nothing measurable: e.g. the server was unreachable from the start

    ALL = (RUNNING, COMPLETE, PARTIAL, INVALID, FAILED)


@dataclass
class RunRecord:
    """A whole run: what was measured, against what, on which machine, and every request."""

    run_id: str
    kind: str  # "sweep" or "depth"
    base_url: str
    workload: dict[str, Any]  # the pydantic workload as JSON, seed included
    started_at: float  # UNIX epoch seconds
    model_id: str | None = None  # the catalog id; None for a bare --url
    engine: str | None = None  # nim / llamacpp / vllm / openai
    served_model: str | None = None  # the name the server answers to
    catalog_entry: dict[str, Any] | None = None  # the entry as it was when the run started
    server_meta: dict[str, Any] = field(default_factory=dict)  # /v1/models, /props, version
    host: dict[str, Any] = field(default_factory=dict)  # CPU, memory, GPU via NVML
    ended_at: float | None = None
    status: str = RunStatus.RUNNING
    error: str | None = None
    # Per level (or depth cell): what the runner observed about itself, e.g.
    # {"lag_p99_ms": 0.4, "slip_p99_ms": 0.2, "valid": true, "reason": null}.
    health: list[dict[str, Any]] = field(default_factory=list)
    # The figures computed from the requests (benchmark.metrics), cached for listing.
    results: dict[str, Any] = field(default_factory=dict)
    requests: list[RequestRecord] = field(default_factory=list)
