"""The load generator: sends a workload's requests on schedule and records every timeline.

One asyncio loop (uvloop), one pooled aiohttp session. Concurrency levels run
closed loop (N workers, each sends its next request when its last one ends);
rate levels run open loop (each request goes out at its intended time, however
many are still in flight). Every request keeps its intended and actual send
times, so send slip is measured, and a ticker measures the loop's own lag; a
level over either limit is reported invalid (benchmark.metrics decides).

A run stops early, keeping what it has, when it is cancelled or when the
server stops answering (a model unloaded mid-run): the caller saves it as partial.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import aiohttp
import uvloop

from benchmark import fit
from benchmark.loop_health import CancelToken, CpuShare, LoopMonitor
from benchmark.prompts import Calibration, Messages, PromptFactory, user_messages
from benchmark.records import RequestRecord
from benchmark.transport import BodyOptions, RequestSpec, Target, new_session, send
from benchmark.workload import DepthWorkload, SweepWorkload

# This many refused or silent requests in a row, none answered between them, and the server is
# taken to be gone (unloaded, crashed, hung): the run stops instead of timing out every request.
GONE_AFTER: Final = 3
GONE_CLASSES: Final = frozenset({"ServerUnreachable", "Timeout"})
CANCEL_POLL_S: Final = 0.05
CALIBRATION_WORDS: Final = (48, 384)
CALIBRATION_MIN_WORDS: Final = 12
# Replies per level whose text is kept (in memory only) for the /tokenize check of usage counts.
TEXT_KEPT: Final = 512
LENGTH_CONTROL_FIELDS: Final = ("ignore_eos", "min_tokens")
FLOOR_SAMPLES: Final = 5
# Probes (length controls, calibration, latency floor) belong to no level: kept, never counted.
PROBE_LEVEL: Final = -1


@dataclass(frozen=True)
class Progress:
    level: int
    levels: int
    label: str  # e.g. "concurrency 8" or "pp2048 tg32 @ d4096"
    done: int
    total: int | None  # None when a level runs for a time rather than a count
    errors: int
    elapsed_s: float
    last_ttft_ms: float | None = None
    output_tokens: int = 0  # answered so far in the level (the server's count, else frames)

    @property
    def eta_s(self) -> float | None:
        if not self.total or not self.done:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)

    @property
    def output_tokens_per_s(self) -> float | None:
        """The level's output throughput so far: a live figure, not the stored result."""
        return self.output_tokens / self.elapsed_s if self.elapsed_s > 0 and self.output_tokens else None


@dataclass
class LevelTally:
    """A level's running counts, so each finished request updates progress in O(1)."""

    level: int
    levels: int
    label: str
    total: int | None
    done: int = 0
    errors: int = 0
    output_tokens: int = 0
    last_ttft_ms: float | None = None

    def count(self, record: RequestRecord) -> None:
        self.done += 1
        if not record.ok:
            self.errors += 1
            return
        frames = record.token_frames()
        self.output_tokens += record.completion_tokens or len(frames)
        if frames:
            self.last_ttft_ms = frames[0] / 1e6


ProgressFn = Callable[[Progress], None]
LevelDoneFn = Callable[[int, list[RequestRecord], dict[str, list[float]]], None]


@dataclass
class RunOutcome:
    records: list[RequestRecord] = field(default_factory=list)
    # Per level: {"lag_ms": [...], "slip_ms": [...]} — the runner's own health samples.
    health: list[dict[str, list[float]]] = field(default_factory=list)
    cancelled: bool = False
    cut_short: str | None = None  # why the run stopped before its end, if it did
    calibration: Calibration = field(default_factory=Calibration)
    latency_floor_ns: int | None = None  # depth runs: the round trip of a minimal request
    length_controls: bool = True  # whether ignore_eos/min_tokens were accepted
    samples: list[tuple[int, int]] = field(default_factory=list)  # (words, server prompt tokens)


class _Stop(Exception):
    pass


class _Run:
    """State shared by both kinds of run: the session, the stop flags, progress and callbacks."""

    def __init__(
        self,
        target: Target,
        sampling_seed: int,
        options: BodyOptions,
        timeout_s: float,
        connections: int,
        cancel: CancelToken | None,
        progress: ProgressFn | None,
        level_done: LevelDoneFn | None,
    ) -> None:
        self.target = target
        self.prompts = PromptFactory(sampling_seed)
        self.options = options
        self.timeout_s = timeout_s
        self.connections = connections
        self.cancel = cancel or CancelToken()
        self.progress = progress
        self.level_done = level_done
        self.outcome = RunOutcome(length_controls=options.length_controls)
        self.monitor = LoopMonitor()
        self.cpu = CpuShare()
        self.start_ns = time.perf_counter_ns()
        self.session: aiohttp.ClientSession | None = None
        self._failures_in_a_row = 0
        self._in_flight: set[asyncio.Task[None]] = set()

    # --- plumbing ---------------------------------------------------------------------------

    async def __aenter__(self) -> _Run:
        self.session = new_session(self.connections)
        self.monitor.start()
        self._watch = asyncio.get_running_loop().create_task(self._watch_cancel())
        return self

    async def __aexit__(self, *exc: object) -> None:
        # A cancel that came after the watcher's last look still makes the run a cancelled one.
        self.outcome.cancelled = self.outcome.cancelled or self.cancel.cancelled
        self._watch.cancel()
        await self.monitor.stop()
        if self.session is not None:
            await self.session.close()

    async def _watch_cancel(self) -> None:
        while not self.cancel.cancelled:
            await asyncio.sleep(CANCEL_POLL_S)
        self.outcome.cancelled = True
        for task in list(self._in_flight):
            task.cancel()

    @property
    def stopping(self) -> bool:
        return self.outcome.cancelled or self.outcome.cut_short is not None or self.cancel.cancelled

    def now_ns(self) -> int:
        return time.perf_counter_ns() - self.start_ns

    async def request(
        self, spec: RequestSpec, record: RequestRecord, keep_text: bool = False
    ) -> RequestRecord:
        """Send one request (as a task, so a cancel can cut it) and judge the server's health."""
        assert self.session is not None
        body = self.options.body(self.target.served_model, spec)
        record.requested_output_tokens = spec.max_tokens
        record.requested_prompt_tokens = spec.requested_prompt_tokens
        task = asyncio.ensure_future(
            send(self.session, self.target, body, record, self.start_ns, self.timeout_s, keep_text)
        )
        self._in_flight.add(task)
        try:
            await task
        except asyncio.CancelledError:
            if not self.outcome.cancelled:
                raise  # our own caller is being cancelled, not just this request
        finally:
            self._in_flight.discard(task)
        self._judge(record)
        return record

    def _judge(self, record: RequestRecord) -> None:
        if record.error_class in GONE_CLASSES:
            self._failures_in_a_row += 1
            if self._failures_in_a_row >= GONE_AFTER and self.outcome.cut_short is None:
                failures = f"{GONE_AFTER} refused or unanswered requests in a row"
                self.outcome.cut_short = f"the server stopped answering ({failures}): {record.error}"
        elif record.ok:
            self._failures_in_a_row = 0

    def report(self, tally: LevelTally, record: RequestRecord, began_ns: int) -> None:
        if record.warmup:
            return
        tally.count(record)
        if self.progress is None:
            return
        self.progress(
            Progress(
                level=tally.level,
                levels=tally.levels,
                label=tally.label,
                done=tally.done,
                total=tally.total,
                errors=tally.errors,
                elapsed_s=(self.now_ns() - began_ns) / 1e9,
                last_ttft_ms=tally.last_ttft_ms,
                output_tokens=tally.output_tokens,
            )
        )

    def finish_level(self, level: int, records: list[RequestRecord]) -> None:
        slips = [(r.sent_ns - r.intended_ns) / 1e6 for r in records if r.sent_ns is not None and not r.warmup]
        health = {"lag_ms": self.monitor.take(), "slip_ms": slips, "cpu_share": [self.cpu.share()]}
        self.outcome.health.append(health)
        self.outcome.records.extend(records)
        if self.level_done is not None:
            self.level_done(level, records, health)

    # --- shared steps -----------------------------------------------------------------------

    async def probe(self, n_words: int, max_tokens: int = 1) -> RequestRecord:
        """A request outside every level; its usage feeds the calibration, its TTFT the floor."""
        text = self.prompts.unique_text(n_words) if n_words > 1 else self.prompts.tag()
        spec = RequestSpec(user_messages(text), max_tokens=max_tokens)
        record = await self.request(spec, RequestRecord(PROBE_LEVEL, -1, self.now_ns(), warmup=True))
        self.outcome.records.append(record)
        if record.prompt_tokens is not None:
            self.outcome.samples.append((n_words, record.prompt_tokens))
        return record

    async def check_length_controls(self) -> None:
        """Send one tiny request; if the server refuses ignore_eos/min_tokens, drop them."""
        record = await self.probe(8, max_tokens=2)
        refused = record.status == 400 and any(f in (record.error or "") for f in LENGTH_CONTROL_FIELDS)
        if refused:
            self.options = BodyOptions(self.options.temperature, self.options.seed, length_controls=False)
            self.outcome.length_controls = False
        elif not record.ok and record.error_class in GONE_CLASSES:
            self.outcome.cut_short = record.error

    async def calibrate(self) -> Calibration:
        """Words -> server tokens, from the server's own usage counts on probe prompts.

        A probe too long for a small context is refused (HTTP 400); a shorter one takes its
        place, so a small model is still calibrated rather than silently guessed at.
        """
        for n_words in CALIBRATION_WORDS:
            while not self.stopping:
                record = await self.probe(n_words)
                if record.ok or record.status != 400 or n_words <= CALIBRATION_MIN_WORDS:
                    break
                n_words //= 4
        self.outcome.calibration = Calibration.fit(self.outcome.samples)
        return self.outcome.calibration


Runner = Callable[[], Awaitable[RunOutcome]]


async def run_sweep(
    target: Target,
    workload: SweepWorkload,
    *,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    level_done: LevelDoneFn | None = None,
    conversations: list[Messages] | None = None,
) -> RunOutcome:
    sampling = workload.sampling
    options = BodyOptions(sampling.temperature, sampling.seed)
    # Open loop has no cap on requests in flight; closed loop needs one connection per worker.
    connections = int(max(workload.levels)) if workload.axis == "concurrency" else 0
    async with _Run(
        target, sampling.seed, options, sampling.timeout_s, connections, cancel, progress, level_done
    ) as run:
        await run.check_length_controls()
        calibration = await run.calibrate() if conversations is None else Calibration()
        for index, value in enumerate(workload.levels):
            if run.stopping:
                break
            await _sweep_level(run, workload, index, value, calibration, conversations)
        return run.outcome


def _spec(
    run: _Run, workload: SweepWorkload, calibration: Calibration, conversations: list[Messages] | None
) -> RequestSpec:
    out = run.prompts.length(workload.output_tokens.mean, workload.output_tokens.sd)
    if conversations is not None:
        return RequestSpec(run.prompts.pick(conversations), max_tokens=out)
    tokens = run.prompts.length(workload.input_tokens.mean, workload.input_tokens.sd)
    text = run.prompts.unique_text(calibration.words_for(tokens))
    return RequestSpec(user_messages(text), max_tokens=out, requested_prompt_tokens=tokens)


async def _sweep_level(
    run: _Run,
    workload: SweepWorkload,
    index: int,
    value: float,
    calibration: Calibration,
    conversations: list[Messages] | None,
) -> None:
    label = f"{workload.axis} {value:g}"
    records: list[RequestRecord] = []
    levels = len(workload.levels)
    total = workload.requests_per_level
    tally = LevelTally(index, levels, label, total)

    def spec() -> RequestSpec:
        return _spec(run, workload, calibration, conversations)

    deadline: int | None = None
    began: int | None = None  # the first measured send

    def more(seq: int) -> bool:
        if run.stopping or (total is not None and seq >= total):
            return False
        return deadline is None or run.now_ns() < deadline

    def start_measuring() -> int:
        nonlocal deadline, began
        if began is not None:
            return began
        run.monitor.take()  # the level's health counts from its first measured request
        run.cpu.share()
        began = run.now_ns()
        if workload.seconds_per_level:
            deadline = began + int(workload.seconds_per_level * 1e9)
        return began

    if workload.axis == "concurrency":
        # Every worker's first request is a warm-up: it opens the worker's connection, and the
        # first wave (all workers at once) is over before anything is counted, so the level
        # measures the steady closed loop rather than one burst. Kept, never counted.
        warmups = iter(range(max(workload.warmup_requests, int(value))))
        counter = iter(range(1 << 62))

        async def worker() -> None:
            for k in warmups:
                if run.stopping:
                    return
                warm = RequestRecord(index, -1 - k, run.now_ns(), warmup=True)
                records.append(warm)
                await run.request(spec(), warm)
            since = start_measuring()
            while more(seq := next(counter)):
                request = spec()  # built first: the prompt is the client's work, not send slip
                record = RequestRecord(index, seq, run.now_ns())
                records.append(record)
                await run.request(request, record, keep_text=seq < TEXT_KEPT)
                run.report(tally, record, since)

        await asyncio.gather(*(worker() for _ in range(int(value))))
    else:
        # Open loop: the warm-ups go first, all at once, then the schedule starts.
        warm = [
            RequestRecord(index, -1 - i, run.now_ns(), warmup=True) for i in range(workload.warmup_requests)
        ]
        await asyncio.gather(*(run.request(spec(), r) for r in warm))
        records.extend(warm)
        since = start_measuring()
        poisson = workload.arrival == "poisson"
        n = total if total is not None else int(value * (workload.seconds_per_level or 0) * 2 + 1)
        gaps = run.prompts.gaps(value, n, poisson)
        tasks: list[asyncio.Task[RequestRecord]] = []
        intended = run.now_ns()
        for seq, gap in enumerate(gaps):
            intended += int(gap * 1e9)
            wait = (intended - run.now_ns()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
            if not more(seq):
                break
            record = RequestRecord(index, seq, intended)
            records.append(record)
            task = asyncio.ensure_future(run.request(spec(), record, keep_text=seq < TEXT_KEPT))
            task.add_done_callback(partial(_reported, run, tally, record, since))
            tasks.append(task)
        await asyncio.gather(*tasks)
    run.finish_level(index, records)


def _reported(
    run: _Run, tally: LevelTally, record: RequestRecord, since: int, task: asyncio.Future[RequestRecord]
) -> None:
    if not task.cancelled():  # a cancelled send never finished: nothing to count
        run.report(tally, record, since)


async def run_depth(
    target: Target,
    workload: DepthWorkload,
    *,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    level_done: LevelDoneFn | None = None,
) -> RunOutcome:
    sampling = workload.sampling
    options = BodyOptions(sampling.temperature, sampling.seed)
    async with _Run(
        target, sampling.seed, options, sampling.timeout_s, 1, cancel, progress, level_done
    ) as run:
        await run.check_length_controls()
        calibration = await run.calibrate()
        run.outcome.latency_floor_ns = await _latency_floor(run, FLOOR_SAMPLES)
        cells = workload.cells()
        for index, (pp, tg, depth) in enumerate(cells):
            if run.stopping:
                break
            await _depth_cell(run, workload, index, len(cells), (pp, tg, depth), calibration)
        return run.outcome


async def _latency_floor(run: _Run, n: int) -> int | None:
    """What every TTFT pays besides processing its prompt: the round trip and the framework.

    Subtracted from TTFT before pp t/s is computed, so the round trip is not counted as
    prompt processing. It is the intercept of TTFT against prompt tokens over the probes
    (minimal prompts, and the calibration's longer ones): the TTFT of even a minimal
    prompt still holds that prompt's own processing, which would make short-prompt pp read
    high. Where the probes cannot define a line, the least minimal-prompt TTFT is used.
    """
    for _ in range(n):
        if run.stopping:
            break
        await run.probe(1)
    return floor_from(
        [
            (r.prompt_tokens, r.token_frames()[0])
            for r in run.outcome.records
            if r.level == PROBE_LEVEL and r.ok and r.prompt_tokens and r.token_frames()
        ]
    )


def floor_from(points: Sequence[tuple[int, int]]) -> int | None:
    """The intercept of TTFT (ns) over prompt tokens, from the fastest probe at each size."""
    if not points:
        return None
    best: dict[int, int] = {}
    for tokens, ttft in points:
        best[tokens] = min(ttft, best.get(tokens, ttft))
    least = min(best.values())
    fitted = fit.line(list(best.items()))
    if fitted is None:
        return least
    slope, intercept = fitted
    # A line that slopes down or crosses below zero is noise, not a floor.
    return int(intercept) if slope > 0 and 0 < intercept <= least else least


async def _depth_cell(
    run: _Run,
    workload: DepthWorkload,
    index: int,
    levels: int,
    cell: tuple[int, int, int],
    calibration: Calibration,
) -> None:
    pp, tg, depth = cell
    label = f"pp{pp} tg{tg} @ d{depth}"
    records: list[RequestRecord] = []
    tally = LevelTally(index, levels, label, workload.runs)
    began = run.now_ns()
    run.monitor.take()
    run.cpu.share()
    for seq in range(workload.runs):
        if run.stopping:
            break
        context = run.prompts.unique_text(calibration.content_words_for(depth)) if depth else ""
        prompt = run.prompts.unique_text(calibration.content_words_for(pp))
        if context and workload.prefix_cache:
            # Load the context into the server's cache first; the measured request then pays only
            # for the prompt on top of it.
            warm = RequestRecord(index, -1 - seq, run.now_ns(), warmup=True)
            await run.request(RequestSpec(user_messages(context), max_tokens=1), warm)
            records.append(warm)
        text = f"{context}\n\n{prompt}" if context else prompt
        spec = RequestSpec(user_messages(text), max_tokens=tg, requested_prompt_tokens=pp + depth)
        record = RequestRecord(index, seq, run.now_ns())
        records.append(record)
        await run.request(spec, record, keep_text=True)
        run.report(tally, record, began)
    run.finish_level(index, records)


def run_blocking(coro: Awaitable[RunOutcome]) -> RunOutcome:
    """Run on a fresh uvloop loop in this thread (the CLI's main thread, or a page's worker)."""
    outcome: list[RunOutcome] = []

    async def main() -> None:
        # The result leaves through a list, not as the task's result: Python 3.11's Runner
        # formats its SIGINT handler (which holds the task) with %r at cleanup, which would
        # repr every record of a big run (a second per million frames).
        outcome.append(await coro)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    return outcome[0]
