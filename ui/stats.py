"""Load statistics per model, from the audit events: how often it loaded, how long that took, how
often it crashed.

Pure: works on ``RecordedEvent`` values, no I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lifecycle.core.events import Crashed, GaveUp, ReadyObserved, RecordedEvent, StartFailed, model_id_of


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks.

    The same definition as numpy's default and Excel's PERCENTILE.INC, so figures copied out
    of the CSV agree with a spreadsheet. None for no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be 0-100, not {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LoadStats:
    model: str
    loads: int  # ReadyObserved: starts that reached ready
    p50_s: float | None
    p90_s: float | None
    crashes: int  # a running server exited on its own
    failed_starts: int  # never became ready (premature exit, timeout, missing image)
    gave_up: int  # the reconciler stopped retrying


def load_stats(events: Iterable[RecordedEvent]) -> list[LoadStats]:
    """One row per model that has events, sorted by model id; app events are skipped."""
    durations: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, dict[type, int]] = defaultdict(lambda: defaultdict(int))
    for recorded in events:
        model = model_id_of(recorded.stream)
        if model is None:
            continue
        event = recorded.event
        counts[model][type(event)] += 1
        if isinstance(event, ReadyObserved):
            durations[model].append(event.load_duration_s)
    return [
        LoadStats(
            model=model,
            loads=len(durations[model]),
            p50_s=percentile(durations[model], 50),
            p90_s=percentile(durations[model], 90),
            crashes=counts[model][Crashed],
            failed_starts=counts[model][StartFailed],
            gave_up=counts[model][GaveUp],
        )
        for model in sorted(counts)
    ]
