"""The workloads the page and the API offer by name, so "Quick" means the same everywhere."""

from __future__ import annotations

from typing import Final

from benchmark.workload import DepthWorkload, SweepWorkload, Workload

PRESETS: Final[dict[str, Workload]] = {
    # A first look at serving: one user, a few, many; about a minute on a small model.
    "quick": SweepWorkload(concurrency=[1, 4, 16], requests_per_level=32),
    # llama-bench's table at growing context: what a long chat does to speed.
    "depth": DepthWorkload(pp=[2048], tg=[32], depths=[0, 4096, 8192, 16384], runs=3),
}


def preset(name: str) -> Workload:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ValueError(f"no preset {name!r}; the presets are: {known}") from None
