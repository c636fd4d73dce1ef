"""/metrics: the models' lifecycle and the gateway's traffic in the Prometheus text format.

Model figures come from the audit history, folded as it grows (loads, crashes, restarts,
load durations), plus each model's state read at scrape time; they count from the start of
the history, so a restarted app continues them. Gateway figures (requests, in flight, queue,
time to first byte, tokens) are this process's own. Each app has its own registry, so two
apps in one process (tests) never share a figure.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from lifecycle.core.admission import MemoryView
from lifecycle.core.events import (
    Crashed,
    LoadRequested,
    ReadyObserved,
    RestartScheduled,
    StartFailed,
    model_id_of,
)
from lifecycle.core.states import Phase

if TYPE_CHECKING:
    from lifecycle.service import LifecycleService

# Loads take seconds (a simulator) to many minutes (a 120B model from a cold disk).
LOAD_BUCKETS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, float("inf"))
TTFB_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, float("inf"))
FEED_PAGE: Final = 1000
_USAGE: Final = {
    kind: re.compile(rf'"{kind}_tokens"\s*:\s*(\d+)'.encode()) for kind in ("prompt", "completion")
}


class History:
    """Per-model counts folded from the audit history, a page of new events per scrape."""

    def __init__(self) -> None:
        self.position = 0
        self.loads: Counter[str] = Counter()
        self.crashes: Counter[str] = Counter()
        self.failed_starts: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()
        self.load_buckets: dict[str, list[int]] = {}
        self.load_sum: Counter[str] = Counter()
        self._lock = threading.Lock()

    def catch_up(self, service: LifecycleService) -> None:
        with self._lock:  # two scrapes at once must not fold the same page twice
            while page := service.events_after(self.position, FEED_PAGE):
                for recorded in page:
                    self._fold(model_id_of(recorded.stream), recorded.event)
                self.position = page[-1].position
                if len(page) < FEED_PAGE:
                    break

    def _fold(self, model_id: str | None, event: object) -> None:
        if model_id is None:
            return
        if isinstance(event, LoadRequested):
            self.loads[model_id] += 1
        elif isinstance(event, Crashed):
            self.crashes[model_id] += 1
        elif isinstance(event, StartFailed):
            self.failed_starts[model_id] += 1
        elif isinstance(event, RestartScheduled):
            self.restarts[model_id] += 1
        elif isinstance(event, ReadyObserved):
            buckets = self.load_buckets.setdefault(model_id, [0] * len(LOAD_BUCKETS))
            for i, bound in enumerate(LOAD_BUCKETS):
                if event.load_duration_s <= bound:
                    buckets[i] += 1
            self.load_sum[model_id] += event.load_duration_s


class ModelCollector(Collector):
    def __init__(self, service: Callable[[], LifecycleService], history: History) -> None:
        self._service, self._history = service, history

    def collect(self) -> Iterator[Metric]:
        service = self._service()
        self._history.catch_up(service)
        history = self._history
        state = GaugeMetricFamily(
            "dxg_model_state", "1 for the phase each model is in", labels=["model", "phase"]
        )
        for status in service.status():
            for phase in Phase:
                state.add_metric([status.id, phase.value], 1.0 if status.phase == phase.value else 0.0)
        yield state
        for name, helptext, counts in (
            ("dxg_model_loads", "Loads asked for (by anyone)", history.loads),
            ("dxg_model_crashes", "Servers that died after they were ready", history.crashes),
            ("dxg_model_failed_starts", "Starts that ended before ready", history.failed_starts),
            ("dxg_model_restarts", "Restarts scheduled after a crash or a failed start", history.restarts),
        ):
            yield _per_model(CounterMetricFamily, name, helptext, counts)
        durations = HistogramMetricFamily(
            "dxg_model_load_duration_seconds", "From start to ready", labels=["model"]
        )
        for model_id, buckets in sorted(history.load_buckets.items()):
            bounds = [
                ("+Inf" if b == float("inf") else repr(b), n)
                for b, n in zip(LOAD_BUCKETS, buckets, strict=True)
            ]
            durations.add_metric([model_id], bounds, history.load_sum[model_id])
        yield durations
        yield from _memory(service.memory())


def _per_model(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily], name: str, helptext: str, counts: Counter[str]
) -> Metric:
    family = kind(name, helptext, labels=["model"])
    for model_id, count in sorted(counts.items()):
        family.add_metric([model_id], count)
    return family


def _memory(memory: MemoryView) -> Iterator[Metric]:
    budget = GaugeMetricFamily(
        "dxg_memory_budget_gb", "The budget: configured, or free memory measured now", labels=["source"]
    )
    budget.add_metric([memory.budget.source], memory.budget.gb)
    yield budget
    yield GaugeMetricFamily("dxg_memory_free_gb", "Room left for another model", value=memory.free_gb)
    held = GaugeMetricFamily(
        "dxg_memory_held_gb", "memory_gb of each model loaded or loading", labels=["model"]
    )
    for holder in memory.holders:
        held.add_metric([holder.model_id], holder.memory_gb)
    yield held


class GatewayCollector(Collector):
    """What is waiting and in flight right now, read from the gateway at scrape time."""

    def __init__(self, in_flight: Counter[str], waiting: Counter[str]) -> None:
        self._in_flight, self._waiting = in_flight, waiting

    def collect(self) -> Iterator[Metric]:
        for name, helptext, counts in (
            ("dxg_gateway_in_flight", "Requests being answered", self._in_flight),
            ("dxg_gateway_queue_length", "Requests waiting for their model to load", self._waiting),
        ):
            yield _per_model(GaugeMetricFamily, name, helptext, counts)


class Metrics:
    def __init__(
        self, service: Callable[[], LifecycleService], in_flight: Counter[str], waiting: Counter[str]
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ModelCollector(service, History()))
        self.registry.register(GatewayCollector(in_flight, waiting))
        self.requests = PromCounter(
            "dxg_gateway_requests",
            "Requests by model and HTTP status",
            ["model", "status"],
            registry=self.registry,
        )
        self.first_byte = Histogram(
            "dxg_gateway_time_to_first_byte_seconds",
            "From the request's arrival to the first byte of its answer, load waits included",
            ["model"],
            buckets=TTFB_BUCKETS,
            registry=self.registry,
        )
        self.tokens = PromCounter(
            "dxg_gateway_tokens",
            "Tokens the servers reported in usage",
            ["model", "kind"],
            registry=self.registry,
        )

    def count_usage(self, model_id: str, tail: bytes) -> None:
        """Count the last usage block in an answer's tail, where there is one."""
        for kind, pattern in _USAGE.items():
            found = pattern.findall(tail)
            if found:
                self.tokens.labels(model_id, kind).inc(int(found[-1]))
