"""What the benchmark page shows, decided without widgets: model rows, live progress lines, the
run history's filters and rows, file names for exports, and what the page may keep of stored runs.

Pure: statuses, job views (``BenchmarkJobs.active``) and ``RunRecord``s in, plain values out.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from benchmark.records import RunRecord, RunStatus
from lifecycle.core.states import Dot
from lifecycle.core.status_view import ModelStatus
from ui.dialog_view import Action, dialog_view
from ui.format import NOT_SET, clock, dot_md, escape_md, local_time

ALL: Final = "all"
KIND_LABELS: Final = {ALL: "All kinds", "sweep": "Sweep", "depth": "Depth"}
STATUS_LABELS: Final = {ALL: "All statuses", **{s: s.capitalize() for s in RunStatus.ALL}}
# A run's status as a dot: green when every level counts, amber when some do not (cut short or
# voided by the runner's own health limits), red when nothing was measured.
_RUN_DOTS: Final = {
    RunStatus.COMPLETE: Dot.GREEN,
    RunStatus.RUNNING: Dot.AMBER,
    RunStatus.PARTIAL: Dot.AMBER,
    RunStatus.INVALID: Dot.AMBER,
    RunStatus.FAILED: Dot.RED,
}


# --- models ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRow:
    id: str
    label: str  # dot and name, markdown
    status: str  # the status words, escaped
    selectable: bool  # loaded: a run can start on it now
    offer_load: bool  # not loaded, and the app can start it: show a Load button
    busy: int  # runs queued or running on it


def model_rows(
    statuses: Iterable[ModelStatus], active: Iterable[Mapping[str, Any]], now: float
) -> list[ModelRow]:
    busy: dict[str, int] = {}
    for job in active:
        busy[job["model_id"]] = busy.get(job["model_id"], 0) + 1
    rows = []
    for status in statuses:
        # The dialog's own rules decide whether Load is on offer (and never for an Offline one).
        view = dialog_view(status, now)
        offer = Action.LOAD in view.actions and view.load_blocked is None
        rows.append(
            ModelRow(
                id=status.id,
                label=f"{dot_md(status.dot)} {escape_md(status.name)}",
                status=escape_md(status.status),
                selectable=status.loaded,
                offer_load=offer,
                busy=busy.get(status.id, 0),
            )
        )
    return rows


# --- live progress -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelLine:
    fraction: float | None  # None: the level runs for a time, so there is no count to fill
    text: str


@dataclass(frozen=True)
class RunProgress:
    run_id: str
    model_id: str
    headline: str  # markdown
    queued: bool
    levels: tuple[LevelLine, ...]


def _level_line(p: Mapping[str, Any]) -> LevelLine:
    done, total = int(p.get("done") or 0), p.get("total")
    parts = [
        f"{p.get('label', '?')}: {done}/{total} requests"
        if total
        else f"{p.get('label', '?')}: {done} requests"
    ]
    if p.get("errors"):
        parts.append(f"{p['errors']} errors")
    eta = p.get("eta_s")
    if total and done >= total:
        parts.append("done")
    elif eta is not None:
        parts.append(f"ETA {clock(eta)}")
    else:
        parts.append(f"{clock(p.get('elapsed_s') or 0)} elapsed")
    if p.get("last_ttft_ms") is not None:
        parts.append(f"last TTFT {p['last_ttft_ms']:.1f} ms")
    fraction = min(done / total, 1.0) if total else None
    return LevelLine(fraction, " · ".join(parts))


def run_progress(view: Mapping[str, Any]) -> RunProgress:
    """One queued or running run (a ``BenchmarkJobs`` view) as the page draws it."""
    model = escape_md(str(view["model_id"]))
    what = f"{view['kind']}: {escape_md(str(view['workload']))}"
    if view["state"] == "queued":
        position = view.get("queue_position")
        ahead = f"#{position} in {model}'s queue" if position else "in the queue"
        headline = (
            f"{dot_md(Dot.AMBER.value)} **{model}** queued ({ahead}; one benchmark runs on a "
            f"model at a time) · {what}"
        )
    else:
        headline = f"{dot_md(Dot.AMBER.value)} **{model}** running · {what}"
    return RunProgress(
        run_id=str(view["run_id"]),
        model_id=str(view["model_id"]),
        headline=headline,
        queued=view["state"] == "queued",
        levels=tuple(_level_line(p) for p in view.get("progress") or ()),
    )


def ended_since(before: Collection[str], now_active: Iterable[Mapping[str, Any]]) -> set[str]:
    """Runs seen active last time and gone now: the history (outside the live part) is stale."""
    return set(before) - {str(v["run_id"]) for v in now_active}


# --- run history ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFilters:
    models: tuple[str, ...] = ()  # empty: all
    kind: str = ALL
    status: str = ALL
    first_day: dt.date | None = None
    last_day: dt.date | None = None  # inclusive


def _midnight(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time()).timestamp()  # local time, as the picker means it


def store_query(filters: RunFilters, limit: int) -> dict[str, Any]:
    """``BenchmarkStore.list`` keyword arguments for the filters (models are filtered after:
    the store takes one model, the page many)."""
    query: dict[str, Any] = {"limit": limit}
    if filters.kind != ALL:
        query["kind"] = filters.kind
    if filters.status != ALL:
        query["status"] = filters.status
    if filters.first_day is not None:
        query["since"] = _midnight(filters.first_day)
    if filters.last_day is not None:
        query["until"] = _midnight(filters.last_day + dt.timedelta(days=1))
    if len(filters.models) == 1:
        query["model_id"] = filters.models[0]
    return query


def filter_runs(runs: Iterable[RunRecord], models: Collection[str]) -> list[RunRecord]:
    return [r for r in runs if not models or (r.model_id or "") in models]


def run_dot(status: str) -> str:
    return dot_md(_RUN_DOTS.get(status, Dot.RED).value)


def model_name(run: RunRecord) -> str:
    return run.model_id or run.served_model or "?"


def run_option(run: RunRecord) -> str:
    """How a run reads in a picker: ``sim-a · sweep · 2025-01-01 12:00:00 · complete · ab12cd``."""
    return " · ".join((model_name(run), run.kind, local_time(run.started_at), run.status, run.run_id))


def history_rows(runs: Iterable[RunRecord]) -> list[dict[str, Any]]:
    return [
        {
            "started": local_time(run.started_at),
            "model": model_name(run),
            "kind": run.kind,
            "status": run.status,
            "workload": workload_summary(run),
            "error": run.error or "",
            "run": run.run_id,
        }
        for run in runs
    ]


def workload_summary(run: RunRecord) -> str:
    """The stored workload in a few words (the JSON is what was validated; re-reading it through
    pydantic here would fail on runs stored by an older version)."""
    w = run.workload or {}
    if run.kind == "depth":
        join = ",".join
        return (
            f"pp {join(map(str, w.get('pp') or []))} tg {join(map(str, w.get('tg') or []))} "
            f"@ depth {join(map(str, w.get('depths') or []))} x {w.get('runs', '?')} runs"
        )
    axis = "concurrency" if w.get("concurrency") else "rate"
    levels = ",".join(f"{v:g}" for v in (w.get("concurrency") or w.get("rates") or []))
    return f"{axis} {levels}"


def run_caption(run: RunRecord) -> str:
    """The facts under a run's heading: when, what, engine, how it ended."""
    ended = clock(run.ended_at - run.started_at) if run.ended_at else NOT_SET
    parts = [
        local_time(run.started_at),
        f"{run.kind}: {workload_summary(run)}",
        f"engine {run.engine or '?'}",
        f"took {ended}",
        f"status {run.status}",
    ]
    if run.error:
        parts.append(f"error: {run.error}")
    return escape_md(" · ".join(parts))


# --- requests and exports ------------------------------------------------------------------------


def request_options(run: RunRecord) -> dict[int, str]:
    """ordinal -> "#3 · concurrency 4 · seq 1 · ok" for the token-gaps picker; warm-ups left out."""
    levels = [str(level) for level in _level_names(run)]
    options = {}
    for ordinal, record in enumerate(run.requests):
        if record.warmup:
            continue
        level = levels[record.level] if record.level < len(levels) else f"level {record.level}"
        outcome = "ok" if record.ok else (record.error_class or "incomplete")
        options[ordinal] = f"#{ordinal} · {level} · seq {record.seq} · {outcome}"
    return options


def _level_names(run: RunRecord) -> Sequence[str]:
    w = run.workload or {}
    if run.kind == "depth":
        return [
            f"pp{p} tg{t} @ d{d}"
            for d in w.get("depths") or []
            for p in w.get("pp") or []
            for t in w.get("tg") or []
        ]
    axis = "concurrency" if w.get("concurrency") else "rate"
    return [f"{axis} {v:g}" for v in (w.get("concurrency") or w.get("rates") or [])]


def export_name(run: RunRecord, extension: str) -> str:
    return f"dxg-bench-{model_name(run)}-{run.run_id}.{extension}"


# --- what the page may keep --------------------------------------------------------------------

# A stored run's content is fixed once it stops running: its id, status and end time say which
# content it is (a run marked partial after a crash changes status, so it reads afresh).
RunVersion = tuple[str, str, float | None]
_V = TypeVar("_V")


def run_version(run: RunRecord) -> RunVersion:
    return (run.run_id, run.status, run.ended_at)


def settled(run: RunRecord) -> bool:
    """Finished one way or another (complete, partial, invalid, failed): it never changes again."""
    return run.status != RunStatus.RUNNING


def frame_count(run: RunRecord) -> int:
    """What a run held in memory costs, roughly: its frames (three list entries each)."""
    return sum(len(r.frame_ns) for r in run.requests)


class LruCache(Generic[_V]):
    """Least-recently-used values, bounded by entries and by their total weight.

    Shared by every session of the app (reruns run in several threads, hence the lock), so what
    one user opened is ready for the next click. ``get_or_make`` builds outside the lock: two
    sessions may build the same value at once, which costs time but never a wrong answer.
    """

    def __init__(self, max_entries: int, max_weight: int) -> None:
        self.max_entries = max_entries
        self.max_weight = max_weight
        self._values: OrderedDict[Hashable, tuple[_V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def get_or_make(
        self, key: Hashable, make: Callable[[], _V | None], weigh: Callable[[_V], int] = lambda _: 1
    ) -> _V | None:
        """The value under ``key``, made and kept if missing; a None from ``make`` is not kept."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key][0]
        value = make()
        if value is not None:
            self._put(key, value, weigh(value))
        return value

    def _put(self, key: Hashable, value: _V, weight: int) -> None:
        with self._lock:
            if key in self._values:
                self._weight -= self._values.pop(key)[1]
            self._values[key] = (value, weight)
            self._weight += weight
            # The newest entry stays even alone over the budget: it is what the page shows now.
            while len(self._values) > 1 and (
                len(self._values) > self.max_entries or self._weight > self.max_weight
            ):
                self._weight -= self._values.popitem(last=False)[1][1]

    def clear(self, keep: Callable[[Hashable], bool] = lambda _: False) -> None:
        """Drop every entry, or every one whose key ``keep`` doesn't keep."""
        with self._lock:
            for key in [k for k in self._values if not keep(k)]:
                self._weight -= self._values.pop(key)[1]
