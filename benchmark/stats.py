"""Summary statistics for benchmark figures: percentiles, bootstrap CIs, A/B comparisons.

Pure numpy over plain sequences, so any figure can be recomputed from stored timelines. Every
random draw comes from a generator seeded by the caller (default 0): the same samples always
give the same interval, which is what lets a stored result be checked later.

Bootstrap medians are drawn exactly from order statistics (see ``bootstrap_medians``), so a
10k-sample, 2000-resample CI costs one sort rather than 20M gathered values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, TypedDict

import numpy as np
from numpy.typing import NDArray

DEFAULT_RESAMPLES: Final = 2000
DEFAULT_CONFIDENCE: Final = 0.95
DEFAULT_SEED: Final = 0

_EN_DASH: Final = "\u2013"  # written as an escape: ruff flags the literal as ambiguous

Verdict = Literal["faster", "slower", "no significant difference", "not enough data"]


class Distribution(TypedDict):
    """One metric over the requests of a level. Figures are None when there are no samples."""

    n: int
    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None
    sd: float | None  # sample sd (ddof=1); None below two samples, where it is undefined
    p50_ci: list[float] | None  # bootstrap [low, high] of the median; None below two samples


class MeanSd(TypedDict):
    """llama-bench style "mean ± sd" over the N runs of a depth cell."""

    n: int
    mean: float | None
    sd: float | None


class Comparison(TypedDict):
    """B against A: ``relative_delta`` = median(B)/median(A) - 1, with its bootstrap CI."""

    n_a: int
    n_b: int
    median_a: float | None
    median_b: float | None
    relative_delta: float | None
    ci: list[float] | None  # [low, high] of relative_delta
    higher_is_better: bool
    verdict: Verdict


def _array(values: Sequence[float] | NDArray[np.floating]) -> NDArray[np.float64]:
    """Finite float64 samples; NaN/inf would poison every statistic, so they are dropped."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def bootstrap_medians(
    values: Sequence[float] | NDArray[np.floating],
    resamples: int = DEFAULT_RESAMPLES,
    *,
    rng: np.random.Generator | None = None,
) -> NDArray[np.float64]:
    """Medians of ``resamples`` bootstrap resamples (with replacement) of ``values``.

    Exact, without building the resamples. Resampling picks indices floor(n * U) of the sorted
    samples with U uniform; as floor and sorting are monotone, the k-th smallest value of a
    resample is sorted[floor(n * U_(k))], and the k-th order statistic of n uniforms is
    Beta(k, n - k + 1). For even n the next one is U_(k) + (1 - U_(k)) * Beta(1, n - k) (the
    least of the n - k uniforms above it). So a 10k-sample, 2000-resample CI costs a sort.
    """
    arr = np.sort(_array(values))
    n = arr.size
    if n == 0:
        return np.empty(0, dtype=np.float64)
    rng = rng if rng is not None else np.random.default_rng(DEFAULT_SEED)

    def pick(u: NDArray[np.float64]) -> NDArray[np.float64]:
        return arr[np.minimum((u * n).astype(np.int64), n - 1)]

    k = (n + 1) // 2  # 1-based rank of the (lower) middle value
    low = rng.beta(k, n - k + 1, size=resamples)
    if n % 2:
        return pick(low)
    high = low + (1.0 - low) * rng.beta(1, n - k, size=resamples)
    return (pick(low) + pick(high)) / 2.0


def _interval(estimates: NDArray[np.float64], confidence: float) -> list[float]:
    """Percentile-method interval of bootstrap estimates."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(estimates, [tail, 100.0 - tail])
    return [float(low), float(high)]


def bootstrap_median_ci(
    values: Sequence[float] | NDArray[np.floating],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> list[float] | None:
    """Percentile-bootstrap CI [low, high] of the median; None below two samples."""
    arr = _array(values)
    if arr.size < 2:
        return None
    return _interval(bootstrap_medians(arr, resamples, rng=np.random.default_rng(seed)), confidence)


def describe(
    values: Sequence[float] | NDArray[np.floating],
    *,
    ci: bool = True,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Distribution:
    """p50/p90/p99 (numpy's linear interpolation), mean, sd, n and a bootstrap CI of the p50."""
    arr = _array(values)
    if arr.size == 0:
        return Distribution(n=0, p50=None, p90=None, p99=None, mean=None, sd=None, p50_ci=None)
    p50, p90, p99 = (float(v) for v in np.percentile(arr, [50.0, 90.0, 99.0]))
    return Distribution(
        n=int(arr.size),
        p50=p50,
        p90=p90,
        p99=p99,
        mean=float(arr.mean()),
        sd=float(arr.std(ddof=1)) if arr.size >= 2 else None,
        p50_ci=(
            bootstrap_median_ci(arr, resamples=resamples, confidence=confidence, seed=seed) if ci else None
        ),
    )


def mean_sd(values: Sequence[float] | NDArray[np.floating]) -> MeanSd:
    """Mean and sample sd, as llama-bench reports its N repetitions."""
    arr = _array(values)
    return MeanSd(
        n=int(arr.size),
        mean=float(arr.mean()) if arr.size else None,
        sd=float(arr.std(ddof=1)) if arr.size >= 2 else None,
    )


def percentile(values: Sequence[float] | NDArray[np.floating], q: float) -> float | None:
    """One percentile (0-100), or None without samples."""
    arr = _array(values)
    return float(np.percentile(arr, q)) if arr.size else None


def compare(
    a: Sequence[float] | NDArray[np.floating],
    b: Sequence[float] | NDArray[np.floating],
    *,
    higher_is_better: bool = False,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """How B's median differs from A's, with a bootstrap CI of the relative delta.

    Latencies (the default) are better lower, so a negative delta whose CI excludes 0 is
    'faster'; pass ``higher_is_better=True`` for throughputs. A and B are resampled
    independently (they are separate runs), each resample pair giving one ratio of medians.
    """
    arr_a, arr_b = _array(a), _array(b)
    empty = Comparison(
        n_a=int(arr_a.size),
        n_b=int(arr_b.size),
        median_a=float(np.median(arr_a)) if arr_a.size else None,
        median_b=float(np.median(arr_b)) if arr_b.size else None,
        relative_delta=None,
        ci=None,
        higher_is_better=higher_is_better,
        verdict="not enough data",
    )
    # A ratio needs a non-zero base, and a CI needs something to resample on both sides.
    if arr_a.size < 2 or arr_b.size < 2 or empty["median_a"] == 0.0:
        return empty
    median_a, median_b = float(np.median(arr_a)), float(np.median(arr_b))
    rng = np.random.default_rng(seed)
    boot_a = bootstrap_medians(arr_a, resamples, rng=rng)
    boot_b = bootstrap_medians(arr_b, resamples, rng=rng)
    # A resample whose A median is 0 has no ratio; drop those rather than divide by zero.
    usable = boot_a != 0.0
    if not usable.any():
        return empty
    deltas = boot_b[usable] / boot_a[usable] - 1.0
    low, high = _interval(deltas, confidence)
    verdict: Verdict = "no significant difference"
    if low > 0.0 or high < 0.0:
        b_is_higher = low > 0.0
        verdict = "faster" if b_is_higher == higher_is_better else "slower"
    return Comparison(
        n_a=int(arr_a.size),
        n_b=int(arr_b.size),
        median_a=median_a,
        median_b=median_b,
        relative_delta=median_b / median_a - 1.0,
        ci=[low, high],
        higher_is_better=higher_is_better,
        verdict=verdict,
    )


def phrase(comparison: Comparison, what: str) -> str:
    """One line for the comparison page, e.g. "12% faster to first token (CI 8\u201315%)".

    Percentages are magnitudes: for a latency a delta of -12% reads "12% faster".
    """
    delta, ci, verdict = comparison["relative_delta"], comparison["ci"], comparison["verdict"]
    if delta is None or ci is None:
        return f"not enough data {what}".strip()
    if verdict == "no significant difference":
        low, high = ci[0] * 100, ci[1] * 100
        return f"no significant difference {what} ({delta * 100:+.0f}%, CI {low:+.0f}% to {high:+.0f}%)"
    low, high = sorted((abs(ci[0]) * 100, abs(ci[1]) * 100))
    return f"{abs(delta) * 100:.0f}% {verdict} {what} (CI {low:.0f}{_EN_DASH}{high:.0f}%)"
