"""The statistics of the report, pinned on small exact cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from limo_exp.analysis import stats, suite_mean

A = [1] * 10 + [0] * 3 + [1] * 5 + [0] * 12  # 30 problems: 10 only A solved, 3 only B, 5 both
B = [0] * 10 + [1] * 3 + [1] * 5 + [0] * 12


def test_exact_mcnemar_matches_the_binomial_by_hand():
    # 10 vs 3 discordant pairs: p = 2 * P(X <= 3), X ~ Bin(13, 1/2) = 2 * (1 + 13 + 78 + 286) / 2^13
    assert stats.mcnemar_exact(10, 3) == pytest.approx(2 * 378 / 8192, abs=1e-15)
    assert stats.mcnemar_exact(3, 10) == stats.mcnemar_exact(10, 3)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(6, 0) == pytest.approx(2 / 64)


def test_paired_on_binary_problems():
    r = stats.paired(A, B, n_boot=2000, seed=0)
    assert (r["n"], r["a_only"], r["b_only"], r["test"]) == (30, 10, 3, "exact McNemar")
    assert r["diff"] == pytest.approx(7 / 30)
    assert r["p_value"] == pytest.approx(0.09228515625)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((1 / 30, 13 / 30))  # pinned: scipy, seed 0
    assert set(r) >= {"diff", "ci_low", "ci_high", "p_value", "n", "a_only", "b_only"}


def test_paired_on_sample_means_uses_an_exact_permutation_test():
    # 5 problems: 2^5 sign flips; |sum of diffs| >= observed (1.0) in 8 of 32
    r = stats.paired([0.5, 1, 0.25, 0.75, 0], [0.25, 0.5, 0, 0.75, 0], seed=0)
    assert r["test"] == "paired permutation" and r["p_value"] == pytest.approx(8 / 32)
    assert (r["a_only"], r["b_only"]) == (1, 0)  # solved = more than half of the samples correct


def test_paired_rejects_bad_input():
    with pytest.raises(ValueError, match="equal-length"):
        stats.paired([1, 0], [1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.paired([2, 0], [1, 0])
    with pytest.raises(ValueError, match="at least one problem"):
        stats.paired([], [])
    same = stats.paired([1, 0, 1], [1, 0, 1])
    assert (same["diff"], same["ci_low"], same["ci_high"], same["p_value"]) == (0, 0, 0, 1.0)


def test_bootstrap_interval_is_pinned_and_nested_levels_widen_it():
    iv = stats.mean_interval(A, n_boot=2000, seed=0)
    assert (iv.mean, iv.low, iv.high) == pytest.approx((0.5, 1 / 3, 2 / 3))
    assert stats.mean_interval(A, n_boot=2000, seed=0) == iv  # seeded
    # the same 30 problems seen by 4 seeds that disagree: resampling seeds widens the interval
    rng = np.random.default_rng(0)
    seeds = np.array([np.array(A) ^ (rng.random(30) < 0.3) for _ in range(4)])
    one = stats.mean_interval(seeds.mean(axis=0), seed=0)
    nested = stats.mean_interval(seeds, seed=0)
    assert nested.high - nested.low > one.high - one.low
    avg = stats.average_interval([A, B], seed=0)
    assert avg.mean == pytest.approx((0.5 + 8 / 30) / 2) and avg.low < avg.mean < avg.high


def test_fit_recovers_a_noiseless_power_law_and_its_plateau_n():
    ns = [8, 16, 32, 64, 128, 256]
    f = stats.fit_curve(ns, [0.6 - 0.5 * n**-0.5 for n in ns])
    assert f.kind == "power"
    assert f.params == pytest.approx((0.6, 0.5, 0.5), rel=1e-6)
    assert f.n95 == pytest.approx((0.5 / (0.05 * 0.6)) ** 2, rel=1e-5)  # 277.8
    g = stats.fit_curve(ns, [0.1 + 0.05 * math.log(n) for n in ns])
    assert g.kind == "log-linear" and g.params == pytest.approx((0.1, 0.05)) and g.n95 is None
    with pytest.raises(stats.NoFit, match="2 distinct N"):
        stats.fit_curve([8, 16], [0.1, 0.2])
    assert stats.fit_curve([8, 16, 32], [0.1, 0.2, 0.25]).kind == "log-linear"  # 3 points: no power law


def test_fit_interval_on_problems():
    rng = np.random.default_rng(0)
    difficulty = rng.random(400)
    pts = {n: (difficulty < 0.8 - 0.7 * n**-0.6).astype(float) for n in (4, 8, 16, 32, 64, 128)}
    f = stats.fit_with_interval(pts, n_boot=100, seed=0)
    assert f.kind == "power" and f.n95_low < f.n95 < f.n95_high


def test_selection_bits():
    assert stats.selection_bits(10, 3) == pytest.approx(math.log2(120))
    assert stats.selection_bits(817, 0) == 0
    assert math.isnan(stats.selection_bits(5, 6))


# two benchmarks for the suite test: 8 problems solved or not, 5 with four samples each
SUITE = {
    "aime": ([1, 1, 0, 1, 0, 1, 1, 0], [0, 1, 0, 0, 0, 1, 0, 0]),
    "math": ([0.5, 1, 0.25, 0.75, 0], [0.25, 0.5, 0, 0.75, 0]),
}


def test_suite_mean_is_the_t_test_on_the_mean_of_the_benchmarks_by_hand():
    from scipy.stats import t as student_t

    r = suite_mean.paired(SUITE, n_boot=2000, seed=0)
    # aime: d mean 3/8, sample variance 120/448; math: d mean 0.2, sample variance 0.175/4
    v1, v2 = 120 / 448 / 8 / 4, 0.175 / 4 / 5 / 4
    df = (v1 + v2) ** 2 / (v1**2 / 7 + v2**2 / 4)
    t = (3 / 8 + 0.2) / 2 / math.sqrt(v1 + v2)
    assert (r["benchmarks"], r["n"]) == (2, 13)
    assert r["diff"] == pytest.approx(0.2875) and r["acc_a"] == pytest.approx((5 / 8 + 0.5) / 2)
    assert (r["t"], r["df"]) == pytest.approx((t, df)) and r["df"] == pytest.approx(9.948, abs=1e-3)
    assert r["p_value"] == pytest.approx(2 * student_t.sf(t, df)) and 0.01 < r["p_value"] < 0.05
    assert r["ci_low"] < r["diff"] < r["ci_high"] and r["ci_low"] > 0  # both benchmarks' gains are > 0
    assert suite_mean.paired(SUITE, n_boot=2000, seed=0) == r  # seeded
    assert "Satterthwaite df 9.9" in r["test"]


def test_suite_mean_on_one_benchmark_is_the_paired_t_test():
    from scipy.stats import ttest_rel

    a, b = SUITE["math"]
    r = suite_mean.paired({"math": (a, b)}, seed=0)
    ref = ttest_rel(a, b)
    assert (r["t"], r["p_value"], r["df"]) == pytest.approx((ref.statistic, ref.pvalue, 4))


def test_suite_mean_holds_its_level_under_no_difference():
    """Two systems of equal per-problem accuracy (drawn per problem, four samples each) on a suite
    of 30 and 60 problems: the test rejects at 5% about 5% of the time (400 suites, seeded)."""
    rng = np.random.default_rng(0)
    rejected = 0
    for _ in range(400):
        suite = {}
        for n in (30, 60):
            p = rng.beta(2, 2, size=n)
            suite[n] = tuple(rng.binomial(4, p) / 4 for _ in range(2))
        rejected += suite_mean.paired(suite, n_boot=10, seed=0)["p_value"] < 0.05
    assert 0.03 <= rejected / 400 <= 0.075, rejected


def test_suite_mean_edges():
    with pytest.raises(ValueError, match="at least one benchmark"):
        suite_mean.paired({})
    with pytest.raises(ValueError, match="aime: .* at least 2"):
        suite_mean.paired({"aime": ([1], [0])})
    same = suite_mean.paired({"x": ([1, 0], [1, 0]), "y": ([1, 1], [1, 1])})
    assert (same["diff"], same["t"], same["p_value"]) == (0, 0, 1.0)
    shifted = suite_mean.paired({"x": ([1, 1], [0, 0]), "y": ([1, 1], [0, 0])})
    assert (shifted["diff"], shifted["p_value"]) == (1.0, 0.0) and shifted["t"] == math.inf
