"""Depth mode (llama-bench style): prompt-processing and generation speed per depth cell.

A cell is one (pp, tg, depth) combination run N times; its requests share a level index.

- pp t/s = prompt tokens actually processed / (TTFT - latency floor). Processed means
  ``prompt_tokens - cached_tokens``: tokens served from the prefix cache cost nothing, and
  counting them would flatter the server. The floor (a measured constant: network, HTTP and
  scheduling overhead of an empty request) is taken off so short prompts are not dominated by it.
- tg t/s = (output tokens - 1) / (last token frame - first token frame): the first token is
  the end of prompt processing, so the generation clock starts there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from benchmark.metrics import NS_PER_MS, NS_PER_S, measured, output_tokens, ttft_ns, validity
from benchmark.records import RequestRecord
from benchmark.stats import DEFAULT_SEED, describe, mean_sd


def processed_prompt_tokens(record: RequestRecord) -> int | None:
    """Prompt tokens the server had to compute; None without a usage prompt count."""
    if record.prompt_tokens is None:
        return None
    return record.prompt_tokens - (record.cached_tokens or 0)


def pp_tps(record: RequestRecord, latency_floor_ns: int) -> float | None:
    """Prompt tokens processed per second; None when the prompt time is not positive."""
    first, tokens = ttft_ns(record), processed_prompt_tokens(record)
    if not record.ok or first is None or tokens is None:
        return None
    prompt_ns = first - latency_floor_ns
    return tokens * NS_PER_S / prompt_ns if prompt_ns > 0 else None


def tg_tps(record: RequestRecord) -> float | None:
    """Generated tokens per second after the first; None below two tokens or one frame."""
    frames = record.token_frames()
    tokens = output_tokens(record)[0]
    if not record.ok or not frames or tokens < 2:
        return None
    span = max(frames) - min(frames)
    return (tokens - 1) * NS_PER_S / span if span > 0 else None


def _server_rate(record: RequestRecord, key: str) -> float | None:
    """llama.cpp's own view (``timings.prompt_per_second`` etc.), to check ours against."""
    timings = record.server_timings or {}
    value = timings.get(key)
    return float(value) if isinstance(value, int | float) else None


def _present(values: Iterable[float | int | None]) -> list[float]:
    return [float(v) for v in values if v is not None]


def depth_cell_summary(
    records: Iterable[RequestRecord],
    latency_floor_ns: int,
    *,
    cell: Mapping[str, Any] | None = None,
    health: Mapping[str, Any] | None = None,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Mean ± sd of pp t/s and tg t/s over a cell's runs, as a JSON-ready dict.

    ``cell`` holds what was asked and is copied in first (``{"pp": 2048, "tg": 32,
    "depth": 4096}``). Empty or all-failed cells give None figures.
    """
    reqs = measured(records)
    done = [r for r in reqs if r.ok]
    summary: dict[str, Any] = {**(cell or {}), **validity(health)}
    summary.update(
        n=len(reqs),
        completed=len(done),
        errors=len(reqs) - len(done),
        latency_floor_ms=latency_floor_ns / NS_PER_MS,
        pp_tps=mean_sd(_present(pp_tps(r, latency_floor_ns) for r in done)),
        tg_tps=mean_sd(_present(tg_tps(r) for r in done)),
        server_pp_tps=mean_sd(_present(_server_rate(r, "prompt_per_second") for r in done)),
        server_tg_tps=mean_sd(_present(_server_rate(r, "predicted_per_second") for r in done)),
        ttft_ms=describe(
            _present((t / NS_PER_MS) if (t := ttft_ns(r)) is not None else None for r in done), seed=seed
        ),
        prompt_tokens=mean_sd(_present(r.prompt_tokens for r in done)),
        cached_tokens=mean_sd(_present(r.cached_tokens or 0 for r in done)),
        output_tokens=mean_sd([output_tokens(r)[0] for r in done]),
        tokens_from_usage=bool(done) and all(r.completion_tokens is not None for r in done),
    )
    return summary
