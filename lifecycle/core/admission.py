"""Admission by memory: does a model fit next to what is loaded, and if not, what could make room?

Pure. Each model's ``memory_gb`` is the user's estimate of what it holds once loaded. The
budget is either configured (a fixed total) or measured (free memory now, to which the
models already ready are added back, since their memory is already taken out of it). Models
on their way up count in full against it: a starting server may not have allocated yet, and
counting it twice errs towards refusing rather than towards an out-of-memory start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lifecycle.core.planner import span

SWAP_HINT: Final = "or load with swap to unload the least recently used idle models"


def gb(value: float) -> str:
    return f"{round(value, 1):g} GB"


@dataclass(frozen=True)
class Budget:
    gb: float  # configured total, or memory free right now
    measured: bool  # True: ``gb`` is free memory measured now (NVML or MemAvailable)
    source: str  # where it comes from, for messages: "DXG_MEMORY_BUDGET_GB", "NVML (1 GPU)", ...


@dataclass(frozen=True)
class Holder:
    """A model that is loaded or asked to be: what it holds, and whether it may be evicted."""

    model_id: str
    memory_gb: float
    ready: bool
    busy: bool  # a request, a chat or a benchmark uses it right now: never evicted
    idle_since: float  # its last use, or when it became ready


@dataclass(frozen=True)
class MemoryView:
    """The budget and what holds it, as the dialog and /metrics show it."""

    budget: Budget
    holders: tuple[Holder, ...]

    @property
    def free_gb(self) -> float:
        return free_gb(self.budget, list(self.holders))

    @property
    def held_gb(self) -> float:
        return sum(h.memory_gb for h in self.holders)


@dataclass(frozen=True)
class Admitted:
    evict: tuple[str, ...] = ()  # unload these first (least recently used first)


@dataclass(frozen=True)
class Refused:
    message: str


def free_gb(budget: Budget, holders: list[Holder], excluding: str | None = None) -> float:
    """Room left for a model beside ``holders`` (all but ``excluding``, the model asking)."""
    total = budget.gb + sum(h.memory_gb for h in holders if h.ready) if budget.measured else budget.gb
    return total - sum(h.memory_gb for h in holders if h.model_id != excluding)


def admit(
    model_id: str, need_gb: float, budget: Budget, holders: list[Holder], *, evict: bool, now: float
) -> Admitted | Refused:
    """Admit ``model_id`` (needing ``need_gb``), evicting idle models when ``evict`` allows."""
    others = [h for h in holders if h.model_id != model_id]
    free = free_gb(budget, holders, excluding=model_id)
    if need_gb <= free:
        return Admitted()
    idle = sorted((h for h in others if h.ready and not h.busy), key=lambda h: h.idle_since)
    if evict:
        chosen: list[str] = []
        for holder in idle:
            if free >= need_gb:
                break
            chosen.append(holder.model_id)
            free += holder.memory_gb
        if free >= need_gb:
            return Admitted(tuple(chosen))
    room = free_gb(budget, holders, excluding=model_id)
    return Refused(_refusal(model_id, need_gb, room, budget.source, others, idle, evict=evict, now=now))


def _refusal(
    model_id: str,
    need_gb: float,
    free: float,
    source: str,
    others: list[Holder],
    idle: list[Holder],
    *,
    evict: bool,
    now: float,
) -> str:
    head = f"{model_id} needs {gb(need_gb)}; {gb(max(free, 0.0))} free ({source})"
    if not others:
        return f"{head}: it does not fit even with nothing else loaded"
    busy = [h for h in others if h.busy]
    # The most recently idle last: the first named are the ones a user would unload first.
    names = [f"{h.model_id} ({gb(h.memory_gb)}, idle {span(round(now - h.idle_since))})" for h in idle]
    names += [f"{h.model_id} ({gb(h.memory_gb)}, in use)" for h in busy]
    names += [f"{h.model_id} ({gb(h.memory_gb)}, loading)" for h in others if not h.ready]
    if evict:
        return f"{head}; even unloading every idle model would not make room: {', '.join(names)}"
    return f"{head}; unload {' or '.join(names)}, {SWAP_HINT}"
