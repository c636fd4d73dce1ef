"""The serving model: when a request gets a batch slot, how long its prefill takes, how fast it decodes.

Pure: no I/O and no clock of its own; times are ``time.monotonic()`` readings
handed in. Every request's whole schedule is fixed when it arrives, which is
what keeps the simulator's timing exact ground truth:

- at most ``max_batch`` sequences decode at once (0: no limit); a request that
  finds every slot taken waits, first come first served, for the earliest
  moment a slot frees. Every admitted request's end is known in advance, so that
  moment is known too: a heap of the planned ends of the running sequences;
- TTFT = the base TTFT + uncached prompt tokens / prefill rate, after any wait;
- the per-token interval is ``1 / tokens_per_s``, stretched by context depth
  (``1 + K * prompt_tokens / 1000``) and by the batch the request joins
  (``1 + S * (n - 1)`` with ``n`` sequences running at its admission, itself
  included), both fixed at admission. The batch's aggregate rate
  ``n * r / (1 + S * (n - 1))`` saturates as it grows and is flat past
  ``max_batch``: the knee of a real server's throughput curve.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ServingParams:
    ttft_s: float
    tokens_per_s: float
    prefill_tokens_per_s: float = 0.0  # 0: prefill is instant
    decode_slowdown_per_1k: float = 0.0
    max_batch: int = 0  # 0: no limit
    batch_slowdown: float = 0.0


@dataclass(frozen=True)
class ServingPlan:
    """One request's schedule: every moment on the monotonic clock, decided at arrival."""

    arrival: float
    admitted: float  # it got a batch slot; prefill starts
    ttft_s: float  # the base TTFT, without queueing and prefill
    prefill_s: float
    batch_n: int  # sequences running at admission, itself included
    interval_s: float  # planned time between two tokens
    n_tokens: int

    @property
    def queued_s(self) -> float:
        return self.admitted - self.arrival

    @property
    def first_due(self) -> float:
        return self.admitted + self.ttft_s + self.prefill_s

    def due(self, index: int) -> float:
        """When token ``index`` is due: absolute, so one late send never turns into drift."""
        return self.first_due + index * self.interval_s

    @property
    def last_due(self) -> float:
        """When the last token is due, which is also when the sequence frees its batch slot."""
        return self.due(max(self.n_tokens - 1, 0))


def reply_length(max_tokens: int, natural: int, min_tokens: int, ignore_eos: bool) -> tuple[int, str]:
    """(completion tokens, finish_reason) of a reply.

    With a natural length the model "emits EOS" after ``natural`` tokens
    ("stop"), or after ``min_tokens`` if that is more, as vLLM holds EOS back
    until then; ``ignore_eos`` or a ``min_tokens`` that reaches ``max_tokens``
    makes it run to ``max_tokens`` ("length"), like a benchmark's fixed-length
    requests on a real server.
    """
    if natural <= 0 or ignore_eos or min_tokens >= max_tokens:
        return max_tokens, "length"
    stop_at = max(natural, min_tokens)
    if stop_at > max_tokens:
        return max_tokens, "length"
    return stop_at, "stop"


class Scheduler:
    """Plans requests in the order they are handed in; never told when one ends or is dropped.

    A client that disconnects keeps its planned slot until its planned end, as if
    the server finished the sequence anyway. That is the simplest rule that keeps
    every plan already handed out valid: nothing that happens later can move them.
    """

    def __init__(self, params: ServingParams) -> None:
        self.params = params
        self._ends: list[float] = []  # min-heap: planned ends of sequences that may still run
        self._horizon = -math.inf  # the latest arrival planned so far

    def _release(self, until: float) -> None:
        # A sequence whose last token is due at or before ``until`` holds no slot then.
        while self._ends and self._ends[0] <= until:
            heapq.heappop(self._ends)

    def _admit(self, now: float) -> float:
        self._release(now)
        limit = self.params.max_batch
        if limit and len(self._ends) >= limit:
            # All slots taken: wait for the earliest to free. Admissions never go backwards
            # (the earliest end only grows), so first come is first served. Other ends at
            # that same moment stay in the heap: each still holds its slot for a request
            # that arrives before then, and the next plan pops it.
            return heapq.heappop(self._ends)
        return now

    def plan(self, arrival: float, prompt_tokens: int, cached_tokens: int, n_tokens: int) -> ServingPlan:
        """Admit a request arriving at ``arrival`` and return its whole schedule.

        Two requests can be handed in out of arrival order by a few microseconds (their
        bodies were read in the other order); the later one is then planned as arriving
        with the earlier, the wait counted in its ``queued_s``, so time never runs back.
        """
        p = self.params
        now = max(arrival, self._horizon)
        self._horizon = now
        admitted = self._admit(now)
        # Running at admission: those not ended by then (one ending that very moment has left).
        batch_n = 1 + sum(1 for end in self._ends if end > admitted)
        uncached = max(prompt_tokens - cached_tokens, 0)
        depth = 1.0 + p.decode_slowdown_per_1k * prompt_tokens / 1000.0
        crowding = 1.0 + p.batch_slowdown * (batch_n - 1)
        plan = ServingPlan(
            arrival=arrival,
            admitted=admitted,
            ttft_s=p.ttft_s,
            prefill_s=uncached / p.prefill_tokens_per_s if p.prefill_tokens_per_s > 0 else 0.0,
            batch_n=batch_n,
            interval_s=depth * crowding / p.tokens_per_s,
            n_tokens=n_tokens,
        )
        heapq.heappush(self._ends, plan.last_due)
        return plan
