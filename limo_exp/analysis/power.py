"""What a comparison can detect before it is run: the power of the paired test the report uses
(``stats.paired``) and the smallest difference it resolves, for one benchmark or a pooled suite.

    mcnemar_power(30, 0.40, 0.60)          # greedy on 30 problems: exact McNemar, ~0.2
    detectable(30, 0.40)                   # the smallest gain found 80% of the time: ~0.3
    detectable(30, 0.40, samples=16)       # mean@16 instead (paired test on per-problem means)

Model, stated in every figure's assumptions: two configurations answer the same ``n`` problems;
per problem, A's and B's correctness are Bernoulli(p_a) and Bernoulli(p_b) with correlation
``rho`` (same model, same problems: they tend to fail together; 0.5 unless measured). Greedy
(one sample): the exact McNemar test, its power summed exactly over the discordant counts. mean@k
(k samples a problem): each problem has its own accuracy (Beta, mean p, ``spread`` its standard
deviation), the paired test on per-problem means is taken as a z-test on their differences (the
permutation test's large-sample form); ``simulate`` checks both.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

RHO = 0.5  # correlation of the two configurations' per-problem correctness, unless measured
SPREAD = 0.3  # standard deviation of per-problem accuracy across a benchmark's problems (mean@k)


@dataclass(frozen=True)
class Detectable:
    n: int
    samples: int
    baseline: float
    difference: float | None  # the smallest gain over the baseline found with ``power`` (None: none <= 1)
    power: float
    alpha: float
    test: str
    assumptions: str


def _cells(p_a: float, p_b: float, rho: float) -> tuple[float, float]:
    """P(A right, B wrong), P(A wrong, B right) under correlation ``rho`` (clipped to what the
    margins allow)."""
    both = p_a * p_b + rho * math.sqrt(p_a * (1 - p_a) * p_b * (1 - p_b))
    both = min(max(both, max(0.0, p_a + p_b - 1)), min(p_a, p_b))
    return p_a - both, p_b - both


@functools.lru_cache(maxsize=64)
def _critical(n: int, alpha: float) -> np.ndarray:
    """Per number of discordant problems d = 0..n, the largest count k of the smaller side at which
    the exact two-sided McNemar test rejects (-1: none)."""
    crit = np.full(n + 1, -1)
    for d in range(1, n + 1):
        k = np.arange(d // 2 + 1)
        ok = np.nonzero(np.minimum(1.0, 2 * st.binom.cdf(k, d, 0.5)) <= alpha)[0]
        crit[d] = ok[-1] if len(ok) else -1
    return crit


def mcnemar_power(n: int, p_a: float, p_b: float, *, rho: float = RHO, alpha: float = 0.05) -> float:
    """The probability that the exact (two-sided) McNemar test rejects at ``alpha`` on ``n`` paired
    problems: summed exactly over the number of discordant problems and how they split."""
    a_only, b_only = _cells(p_a, p_b, rho)
    disc = a_only + b_only
    if disc <= 0:
        return 0.0
    d = np.arange(n + 1)
    crit = _critical(n, alpha)
    share = a_only / disc
    # either side's count at or below the critical value (the two tails never overlap when k < d/2)
    low = np.where(crit >= 0, st.binom.cdf(crit, d, share), 0.0)
    high = np.where(crit >= 0, st.binom.sf(d - crit - 1, d, share), 0.0)
    return float((st.binom.pmf(d, n, disc) * (low + high)).sum())


def mean_power(
    n: int,
    samples: int,
    p_a: float,
    p_b: float,
    *,
    rho: float = RHO,
    spread: float = SPREAD,
    alpha: float = 0.05,
) -> float:
    """Power of the paired test on per-problem means of ``samples`` samples (normal form)."""
    var_a = _problem_var(p_a, spread) + (p_a * (1 - p_a) - _problem_var(p_a, spread)) / samples
    var_b = _problem_var(p_b, spread) + (p_b * (1 - p_b) - _problem_var(p_b, spread)) / samples
    cov = rho * math.sqrt(_problem_var(p_a, spread) * _problem_var(p_b, spread))
    sd = math.sqrt(max(var_a + var_b - 2 * cov, 1e-12) / n)
    z = st.norm.ppf(1 - alpha / 2)
    shift = abs(p_b - p_a) / sd
    return float(st.norm.sf(z - shift) + st.norm.cdf(-z - shift))


def _problem_var(p: float, spread: float) -> float:
    """Variance of per-problem accuracy across problems: ``spread**2``, at most p(1-p)."""
    return min(spread**2, p * (1 - p) * 0.999)


def detectable(
    n: int,
    baseline: float,
    *,
    samples: int = 1,
    power: float = 0.8,
    alpha: float = 0.05,
    rho: float = RHO,
    spread: float = SPREAD,
    step: float = 0.005,
) -> Detectable:
    """The smallest gain over ``baseline`` that the paired test finds with probability ``power``."""
    if samples == 1:
        test = "exact McNemar (greedy, one sample a problem)"
        assumptions = f"rho={rho}"
    else:
        test = f"paired test on per-problem mean@{samples} (normal form)"
        assumptions = f"rho={rho}, per-problem accuracy sd={spread}"
    found = None
    gain = step
    while baseline + gain <= 1.0 + 1e-9:
        p_b = min(baseline + gain, 1.0)
        got = (
            mcnemar_power(n, baseline, p_b, rho=rho, alpha=alpha)
            if samples == 1
            else mean_power(n, samples, baseline, p_b, rho=rho, spread=spread, alpha=alpha)
        )
        if got >= power:
            found = round(gain, 6)
            break
        gain += step
    return Detectable(n, samples, baseline, found, power, alpha, test, assumptions)


def simulate(
    n: int,
    p_a: float,
    p_b: float,
    *,
    samples: int = 1,
    rho: float = RHO,
    spread: float = SPREAD,
    alpha: float = 0.05,
    studies: int = 2000,
    seed: int = 0,
) -> float:
    """The share of ``studies`` simulated paired studies in which the report's test (exact McNemar
    for one sample, else a z-test on per-problem mean differences) rejects at ``alpha``."""
    rng = np.random.default_rng(seed)
    rejected = 0
    if samples == 1:
        a_only, b_only = _cells(p_a, p_b, rho)
        for _ in range(studies):
            cells = rng.multinomial(n, [a_only, b_only, 1 - a_only - b_only])
            d = cells[0] + cells[1]
            if d == 0:
                continue
            k = min(cells[0], cells[1])
            rejected += min(1.0, 2 * st.binom.cdf(k, d, 0.5)) <= alpha
        return rejected / studies
    z = st.norm.ppf(1 - alpha / 2)
    for _ in range(studies):
        qa, qb = _correlated_accuracies(rng, n, p_a, p_b, rho, spread)
        diff = rng.binomial(samples, qb) / samples - rng.binomial(samples, qa) / samples
        sd = diff.std(ddof=1) / math.sqrt(n)
        rejected += sd > 0 and abs(diff.mean()) / sd > z
    return rejected / studies


def _correlated_accuracies(rng, n, p_a, p_b, rho, spread):
    """Per-problem accuracies of A and B: Beta margins (means p, sd ``spread``) tied by a Gaussian
    copula with correlation ``rho``."""
    g = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    u = st.norm.cdf(g)
    return _beta(p_a, spread).ppf(u[:, 0]), _beta(p_b, spread).ppf(u[:, 1])


def _beta(p: float, spread: float):
    var = _problem_var(p, spread)
    common = p * (1 - p) / var - 1
    return st.beta(max(p * common, 1e-3), max((1 - p) * common, 1e-3))
