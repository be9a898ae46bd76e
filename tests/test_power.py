"""The power of the report's paired tests, before a sweep runs (analysis/power.py): the exact
McNemar sum against a brute-force enumeration and against simulated studies, mean@k's normal form
against simulation, and the smallest detectable differences it gives."""

from __future__ import annotations

import itertools

import pytest
from scipy import stats as st

from limo_exp.analysis.power import _cells, detectable, mcnemar_power, mean_power, simulate


def _brute_force(n: int, p_a: float, p_b: float, rho: float, alpha: float = 0.05) -> float:
    """Every (A-only, B-only) count pair of n problems, McNemar's exact test by scipy's binomtest."""
    a_only, b_only = _cells(p_a, p_b, rho)
    total = 0.0
    for i, j in itertools.product(range(n + 1), repeat=2):
        if i + j == 0 or i + j > n:
            continue
        if st.binomtest(i, i + j, 0.5).pvalue <= alpha:
            total += st.multinomial.pmf([i, j, n - i - j], n, [a_only, b_only, 1 - a_only - b_only])
    return total


def test_thirty_problems_greedy_forty_vs_sixty_percent():
    """The hand-checked case: AIME-sized, greedy, 40% vs 60%. Independent answers: the test finds
    it one time in four; answers that fail together (rho 0.5): 43%."""
    assert mcnemar_power(30, 0.4, 0.6, rho=0.0) == pytest.approx(0.25100, abs=1e-5)
    assert mcnemar_power(30, 0.4, 0.6, rho=0.5) == pytest.approx(0.42985, abs=1e-5)
    for rho in (0.0, 0.5):
        assert mcnemar_power(30, 0.4, 0.6, rho=rho) == pytest.approx(
            _brute_force(30, 0.4, 0.6, rho), abs=1e-9
        )


@pytest.mark.parametrize(
    "n,p_a,p_b,rho", [(30, 0.4, 0.6, 0.5), (30, 0.4, 0.6, 0.0), (200, 0.3, 0.4, 0.5), (500, 0.5, 0.56, 0.5)]
)
def test_the_exact_power_agrees_with_simulated_studies(n, p_a, p_b, rho):
    """2,000 simulated paired studies: within 0.035 (3 standard errors of a share near 0.5)."""
    assert simulate(n, p_a, p_b, rho=rho, studies=2000, seed=1) == pytest.approx(
        mcnemar_power(n, p_a, p_b, rho=rho), abs=0.035
    )


@pytest.mark.parametrize("n,k,p_a,p_b", [(30, 16, 0.4, 0.5), (100, 4, 0.5, 0.55), (40, 64, 0.3, 0.38)])
def test_mean_at_k_power_agrees_with_simulated_studies(n, k, p_a, p_b):
    assert simulate(n, p_a, p_b, samples=k, studies=2000, seed=2) == pytest.approx(
        mean_power(n, k, p_a, p_b), abs=0.04
    )


def test_what_a_benchmark_can_detect():
    aime = detectable(30, 0.4)
    assert aime.difference == pytest.approx(0.28) and aime.test.startswith("exact McNemar")
    assert "rho=0.5" in aime.assumptions
    assert detectable(30, 0.4, samples=64).difference == pytest.approx(0.16)  # mean@64 halves it
    sizes = [detectable(n, 0.5).difference for n in (30, 100, 500, 1500)]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == pytest.approx(0.04)
    assert detectable(10, 0.9).difference is None  # nothing up to 100% is found 80% of the time
