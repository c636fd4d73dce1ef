"""Admission by memory, pure: what fits, the refusal's wording, and which idle models make room."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.core.admission import Admitted, Budget, Holder, Refused, admit, free_gb
from lifecycle.observe.memory_budget import budget

NOW = 10_000.0
BUDGET = Budget(128.0, measured=False, source="budget 128 GB, DXG_MEMORY_BUDGET_GB")


def holder(
    model_id: str, gb: float, *, ready: bool = True, busy: bool = False, idle_for: float = 60
) -> Holder:
    return Holder(model_id, gb, ready=ready, busy=busy, idle_since=NOW - idle_for)


def test_a_model_that_fits_is_admitted() -> None:
    assert admit("gpt-oss-20b", 16, BUDGET, [holder("llama", 24)], evict=False, now=NOW) == Admitted()


def test_a_model_that_does_not_fit_is_refused_naming_what_to_unload() -> None:
    loaded = [holder("gpt-oss-20b", 16, idle_for=600), holder("qwen", 74, idle_for=30)]
    decision = admit("gpt-oss-120b", 70, BUDGET, loaded, evict=False, now=NOW)
    assert decision == Refused(
        "gpt-oss-120b needs 70 GB; 38 GB free (budget 128 GB, DXG_MEMORY_BUDGET_GB); unload "
        "gpt-oss-20b (16 GB, idle 10 min) or qwen (74 GB, idle 30 s), "
        "or load with swap to unload the least recently used idle models"
    )


def test_swap_evicts_the_least_recently_used_idle_models_until_it_fits() -> None:
    loaded = [holder("a", 40, idle_for=10), holder("b", 40, idle_for=900), holder("c", 40, idle_for=300)]
    # 8 GB free; 70 needed: the two idle longest (b, then c) make 88.
    assert admit("big", 70, BUDGET, loaded, evict=True, now=NOW) == Admitted(("b", "c"))


def test_a_busy_or_loading_model_is_never_evicted() -> None:
    loaded = [holder("busy", 60, busy=True, idle_for=10_000), holder("loading", 60, ready=False)]
    decision = admit("big", 70, BUDGET, loaded, evict=True, now=NOW)
    assert isinstance(decision, Refused)
    assert decision.message.endswith(
        "even unloading every idle model would not make room: busy (60 GB, in use), loading (60 GB, loading)"
    )


def test_a_model_bigger_than_the_budget_says_so() -> None:
    decision = admit("huge", 200, BUDGET, [], evict=True, now=NOW)
    assert decision == Refused(
        "huge needs 200 GB; 128 GB free (budget 128 GB, DXG_MEMORY_BUDGET_GB): it does not fit even with "
        "nothing else loaded"
    )


def test_a_measured_budget_adds_back_what_ready_models_hold_and_counts_starting_ones_in_full() -> None:
    measured = Budget(30.0, measured=True, source="measured as MemAvailable")  # free right now
    # The ready model's 40 GB is already out of the 30 free; the starting one's 20 may not be yet.
    assert free_gb(measured, [holder("ready", 40), holder("starting", 20, ready=False)]) == 10.0
    # A repeat load of a model already admitted does not count against itself.
    assert admit("ready", 40, measured, [holder("ready", 40)], evict=False, now=NOW) == Admitted()


def test_the_budget_is_configured_or_measured(tmp_path: Path) -> None:
    assert budget(64.0) == Budget(64.0, measured=False, source="budget 64 GB, DXG_MEMORY_BUDGET_GB")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       131072000 kB\nMemAvailable:   41943040 kB\n", encoding="ascii")
    assert budget(None, meminfo) == Budget(40.0, measured=True, source="measured as MemAvailable")
    meminfo.write_text("MemTotal: 1 kB\n", encoding="ascii")
    with pytest.raises(RuntimeError, match="no MemAvailable line"):
        budget(None, meminfo)
