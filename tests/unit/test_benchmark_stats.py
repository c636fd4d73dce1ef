"""benchmark.stats: percentiles, the exact bootstrap of the median, and A/B comparisons.

Samples come from explicitly seeded generators, so every figure here is deterministic.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from benchmark.stats import (
    bootstrap_median_ci,
    bootstrap_medians,
    compare,
    describe,
    mean_sd,
    percentile,
    phrase,
)


def test_describe_matches_numpy_on_a_known_sample() -> None:
    values = list(range(1, 101))
    d = describe(values)
    assert d["n"] == 100
    assert d["p50"] == pytest.approx(50.5)
    assert d["p90"] == pytest.approx(90.1)
    assert d["p99"] == pytest.approx(99.01)
    assert d["mean"] == pytest.approx(50.5)
    assert d["sd"] == pytest.approx(float(np.std(values, ddof=1)))
    assert d["p50_ci"] is not None
    assert d["p50_ci"][0] <= 50.5 <= d["p50_ci"][1]
    json.dumps(d)  # plain floats and lists only


def test_describe_without_samples_is_all_none() -> None:
    d = describe([])
    assert d == {"n": 0, "p50": None, "p90": None, "p99": None, "mean": None, "sd": None, "p50_ci": None}
    one = describe([3.0])
    assert (one["n"], one["p50"], one["mean"], one["sd"], one["p50_ci"]) == (1, 3.0, 3.0, None, None)
    assert percentile([], 99) is None
    assert mean_sd([]) == {"n": 0, "mean": None, "sd": None}


def test_non_finite_samples_are_dropped() -> None:
    d = describe([1.0, float("nan"), 3.0, float("inf")])
    assert d["n"] == 2
    assert d["mean"] == 2.0


def test_mean_sd_is_the_sample_sd() -> None:
    assert mean_sd([100.0, 200.0]) == {"n": 2, "mean": 150.0, "sd": pytest.approx(70.710678, rel=1e-6)}


@pytest.mark.parametrize("n", [10, 11])
def test_exact_bootstrap_medians_match_brute_force_resampling(n: int) -> None:
    """The order-statistic shortcut must give the same distribution as resampling by hand."""
    rng = np.random.default_rng(5)
    sample = rng.normal(size=n)
    brute = np.median(sample[rng.integers(0, n, size=(100_000, n))], axis=1)
    exact = bootstrap_medians(sample, 100_000, rng=np.random.default_rng(6))
    qs = [2.5, 25, 50, 75, 97.5]
    # Both are discrete over the same few order statistics; their quantiles coincide.
    np.testing.assert_allclose(np.percentile(exact, qs), np.percentile(brute, qs))
    assert exact.mean() == pytest.approx(brute.mean(), abs=0.01)


def test_median_ci_contains_the_true_median_and_is_reproducible() -> None:
    sample = np.random.default_rng(1).normal(loc=10.0, scale=2.0, size=2000)
    ci = bootstrap_median_ci(sample, seed=42)
    assert ci is not None
    assert ci[0] < 10.0 < ci[1]
    assert ci[1] - ci[0] < 0.5  # about 2 * 1.96 * 1.2533 * 2 / sqrt(2000) = 0.22
    assert bootstrap_median_ci(sample, seed=42) == ci
    assert bootstrap_median_ci(sample, seed=43) != ci
    assert describe(sample, seed=42)["p50_ci"] == ci


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    true_median = 1.0  # lognormal(0, s) has median e^0
    trials = 400
    hits = 0
    for i in range(trials):
        ci = bootstrap_median_ci(rng.lognormal(0.0, 0.8, size=201), seed=i)
        assert ci is not None
        hits += ci[0] <= true_median <= ci[1]
    assert 0.90 <= hits / trials <= 0.99


def test_describe_is_fast_for_ten_thousand_samples() -> None:
    sample = np.random.default_rng(2).lognormal(3.0, 0.5, size=10_000)
    start = time.perf_counter()
    describe(sample)
    compare(sample, sample * 1.1)
    assert time.perf_counter() - start < 0.5


def test_same_distribution_shows_no_significant_difference() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(3.0, 0.4, size=500), rng.lognormal(3.0, 0.4, size=500)
    result = compare(a, b)
    assert result["verdict"] == "no significant difference"
    assert result["ci"] is not None
    assert result["ci"][0] < 0.0 < result["ci"][1]
    assert phrase(result, "to first token").startswith("no significant difference to first token")


def test_a_shifted_latency_is_faster_with_a_ci_around_the_shift() -> None:
    rng = np.random.default_rng(4)
    a = rng.lognormal(3.0, 0.4, size=1000)
    b = rng.lognormal(3.0, 0.4, size=1000) * 0.88  # B takes 12% less time
    result = compare(a, b)
    assert result["verdict"] == "faster"
    assert result["relative_delta"] == pytest.approx(result["median_b"] / result["median_a"] - 1.0)
    assert result["ci"] is not None
    low, high = result["ci"]
    assert low < result["relative_delta"] < high < 0.0
    assert low < -0.12 < high
    text = phrase(result, "to first token")
    assert text.startswith(f"{abs(result['relative_delta']) * 100:.0f}% faster to first token (CI ")
    assert "\u2013" in text
    assert compare(b, a)["verdict"] == "slower"
    assert compare(a, b, seed=9) == compare(a, b, seed=9)


def test_higher_is_better_flips_the_verdict_for_throughputs() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(100.0, 5.0, size=300)
    b = rng.normal(120.0, 5.0, size=300)
    assert compare(a, b, higher_is_better=True)["verdict"] == "faster"
    assert compare(a, b)["verdict"] == "slower"  # as a latency, a higher figure is worse


def test_compare_without_enough_data_says_so() -> None:
    assert compare([], [1.0, 2.0])["verdict"] == "not enough data"
    assert compare([1.0], [1.0, 2.0])["relative_delta"] is None
    zero = compare([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])  # no ratio to a zero median
    assert (zero["verdict"], zero["ci"]) == ("not enough data", None)
    assert phrase(zero, "to first token") == "not enough data to first token"
    json.dumps(zero)
