"""What a comparison can detect before it is run: the power of the paired test the report uses
(``stats.paired``) and the smallest difference it resolves, for one benchmark or for the suite's
headline, the unweighted mean over its benchmarks (the tables' "average" column).

    mcnemar_power(30, 0.40, 0.60)          # greedy, one run a setting, 30 problems: exact McNemar, ~0.4
    detectable(30, 0.40)                   # the smallest gain found 80% of the time: 0.28
    detectable(30, 0.40, samples=16)       # mean@16 instead (paired test on per-problem means)
    detectable(30, 0.40, seeds=3)          # 3 seeds a setting, averaged per problem as the report does
    suite_detectable([(30, 0.4, 1), (500, 0.6, 1)])   # the unweighted mean of two benchmarks

Model, stated in every figure's assumptions: two settings answer the same ``n`` problems; per
problem, one answer of A and one of B are right with probabilities p_a and p_b and correlation
``rho`` (same model, same problems: they tend to fail together; 0.5 unless measured). One answer a
problem (greedy, one seed): the exact McNemar test, its power summed exactly over the discordant
counts. Several answers a problem (samples x seeds, averaged per problem as ``study.per_problem``
does): each problem has its own accuracy (Beta, mean p, ``spread`` its standard deviation), each
answer of each run a draw from it; A's and B's accuracies covary so that single answers keep the
correlation ``rho`` (one meaning of rho in both forms: they agree at one answer a problem). The
spread is 0.4: at p = 0.5 a spread under 0.354 cannot carry rho = 0.5 at all, and two runs of one
setting would agree less often than two settings do. The report's paired permutation test on
the per-problem means is taken in its t form (noncentral t, n - 1 degrees of freedom: the normal
form is 1-1.5 points optimistic at n = 30). A seed is a whole run (a training and its evaluation),
modelled here like a sample of the problem's accuracy: a shift of a whole run's accuracy between
seeds is not modelled (no measured figure), so more seeds can only be optimistic here. The suite:
the mean over benchmarks of their paired differences, its variance the sum of theirs / B^2, a t
test with Welch-Satterthwaite degrees of freedom. ``simulate`` checks the single-benchmark forms.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

RHO = 0.5  # correlation of the two configurations' per-problem correctness, unless measured
SPREAD = 0.4  # standard deviation of per-problem accuracy across a benchmark's problems (see above)


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
    seeds: int = 1


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


def diff_var(p_a: float, p_b: float, draws: int, *, rho: float = RHO, spread: float = SPREAD) -> float:
    """Variance of one problem's paired difference of per-problem means of ``draws`` answers a side
    (samples x seeds): the McNemar cells' for one answer, else the Beta model's."""
    if draws == 1:
        a_only, b_only = _cells(p_a, p_b, rho)
        return max(a_only + b_only - (b_only - a_only) ** 2, 1e-12)
    va, vb = _problem_var(p_a, spread), _problem_var(p_b, spread)
    var_a = va + (p_a * (1 - p_a) - va) / draws
    var_b = vb + (p_b * (1 - p_b) - vb) / draws
    return max(var_a + var_b - 2 * _accuracy_corr(p_a, p_b, rho, spread) * math.sqrt(va * vb), 1e-12)


def _accuracy_corr(p_a: float, p_b: float, rho: float, spread: float) -> float:
    """The correlation of A's and B's per-problem accuracies that gives single answers the
    correlation ``rho`` (at most 1: a spread too small for ``rho`` caps it)."""
    single = rho * math.sqrt(p_a * (1 - p_a) * p_b * (1 - p_b))
    spreads = math.sqrt(_problem_var(p_a, spread) * _problem_var(p_b, spread))
    return min(single / spreads, 0.999) if spreads > 0 else 0.0  # 0% or 100%: no spread to covary


def _t_power(shift: float, se: float, df: float, alpha: float) -> float:
    """Power of a two-sided t test at ``alpha``: a true difference ``shift``, standard error ``se``."""
    t = st.t.ppf(1 - alpha / 2, df)
    nc = abs(shift) / se
    return float(st.nct.sf(t, df, nc) + st.nct.cdf(-t, df, nc))


def mean_power(
    n: int,
    samples: int,
    p_a: float,
    p_b: float,
    *,
    seeds: int = 1,
    rho: float = RHO,
    spread: float = SPREAD,
    alpha: float = 0.05,
) -> float:
    """Power of the paired test on per-problem means of ``samples`` x ``seeds`` answers (t form)."""
    var = diff_var(p_a, p_b, samples * seeds, rho=rho, spread=spread)
    return _t_power(p_b - p_a, math.sqrt(var / n), max(n - 1, 1), alpha)


def suite_power(
    benches: list[tuple[int, float, int]],
    gain: float,
    *,
    rho: float = RHO,
    spread: float = SPREAD,
    alpha: float = 0.05,
) -> float:
    """Power of the paired test on the unweighted mean of benchmarks ``(problems, baseline,
    answers a problem)``, each improved by ``gain`` (capped at 100%): t with Satterthwaite df."""
    b = len(benches)
    parts = [diff_var(p, min(p + gain, 1.0), k, rho=rho, spread=spread) / (b * b * n) for n, p, k in benches]
    shift = sum(min(p + gain, 1.0) - p for _, p, _ in benches) / b
    df = sum(parts) ** 2 / sum(v * v / max(n - 1, 1) for v, (n, _, _) in zip(parts, benches))
    return _t_power(shift, math.sqrt(sum(parts)), df, alpha)


def _problem_var(p: float, spread: float) -> float:
    """Variance of per-problem accuracy across problems: ``spread**2``, at most p(1-p)."""
    return min(spread**2, p * (1 - p) * 0.999)


def _smallest(power_at, baseline: float, power: float, step: float) -> float | None:
    gain = step
    while baseline + gain <= 1.0 + 1e-9:
        if power_at(gain) >= power:
            return round(gain, 6)
        gain += step
    return None


def detectable(
    n: int,
    baseline: float,
    *,
    samples: int = 1,
    seeds: int = 1,
    power: float = 0.8,
    alpha: float = 0.05,
    rho: float = RHO,
    spread: float = SPREAD,
    step: float = 0.005,
) -> Detectable:
    """The smallest gain over ``baseline`` that the paired test finds with probability ``power``,
    between two settings of ``seeds`` runs each, ``samples`` answers a problem a run."""
    if samples * seeds == 1:
        test = "exact McNemar (greedy, one sample a problem)"
        assumptions = f"rho={rho}"

        def at(gain):
            return mcnemar_power(n, baseline, min(baseline + gain, 1.0), rho=rho, alpha=alpha)
    else:
        test = f"paired test on per-problem means of {_answers(samples, seeds)} (t form)"
        assumptions = f"rho={rho}, per-problem accuracy sd={spread}"

        def at(gain):
            p_b = min(baseline + gain, 1.0)
            return mean_power(n, samples, baseline, p_b, seeds=seeds, rho=rho, spread=spread, alpha=alpha)

    found = _smallest(at, baseline, power, step)
    return Detectable(n, samples, baseline, found, power, alpha, test, assumptions, seeds)


def _answers(samples: int, seeds: int) -> str:
    runs = f" x {seeds} seeds" if seeds > 1 else ""
    return f"{samples} sample{'s' * (samples > 1)}{runs}"


def suite_detectable(
    benches: list[tuple[int, float, int]],
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    rho: float = RHO,
    spread: float = SPREAD,
    step: float = 0.005,
) -> Detectable:
    """The smallest gain on every benchmark of ``(problems, baseline, answers a problem)`` that the
    paired test on their unweighted mean finds with probability ``power``."""
    base = sum(p for _, p, _ in benches) / len(benches)
    found = _smallest(
        lambda g: suite_power(benches, g, rho=rho, spread=spread, alpha=alpha),
        min(p for _, p, _ in benches),  # gains up to the lowest baseline's 100%
        power,
        step,
    )
    return Detectable(
        sum(n for n, _, _ in benches),
        min(k for _, _, k in benches),
        base,
        found,
        power,
        alpha,
        f"t test on the unweighted mean of {len(benches)} benchmarks' paired differences (Satterthwaite df)",
        f"rho={rho}, per-problem accuracy sd={spread} where a problem has several answers",
    )


def simulate(
    n: int,
    p_a: float,
    p_b: float,
    *,
    samples: int = 1,
    seeds: int = 1,
    rho: float = RHO,
    spread: float = SPREAD,
    alpha: float = 0.05,
    studies: int = 2000,
    seed: int = 0,
) -> float:
    """The share of ``studies`` simulated paired studies in which the test rejects at ``alpha``:
    exact McNemar for one answer a problem, else the paired t test on per-problem means of
    ``samples`` x ``seeds`` answers (each seed's run drawn from the problem's accuracy)."""
    rng = np.random.default_rng(seed)
    rejected = 0
    if samples * seeds == 1:
        a_only, b_only = _cells(p_a, p_b, rho)
        for _ in range(studies):
            cells = rng.multinomial(n, [a_only, b_only, 1 - a_only - b_only])
            d = cells[0] + cells[1]
            if d == 0:
                continue
            k = min(cells[0], cells[1])
            rejected += min(1.0, 2 * st.binom.cdf(k, d, 0.5)) <= alpha
        return rejected / studies
    draws = samples * seeds
    qa, qb = _correlated_accuracies(rng, (studies, n), p_a, p_b, rho, spread)
    diff = (rng.binomial(draws, qb) - rng.binomial(draws, qa)) / draws
    sd = diff.std(axis=1, ddof=1) / math.sqrt(n)
    t = np.abs(diff.mean(axis=1)) / np.where(sd > 0, sd, np.inf)
    return float(np.mean(t > st.t.ppf(1 - alpha / 2, n - 1)))


def _correlated_accuracies(rng, n, p_a, p_b, rho, spread):
    """Per-problem accuracies of A and B: Beta margins (means p, sd ``spread``); B's is A's quantile
    (comonotone) on a share c of the problems, an independent draw on the rest, c set so that their
    covariance is the one ``diff_var`` assumes (exactly, in expectation)."""
    a, b = _beta(p_a, spread), _beta(p_b, spread)
    grid = (np.arange(4096) + 0.5) / 4096
    comonotone = float(np.mean(a.ppf(grid) * b.ppf(grid))) - p_a * p_b
    want = _accuracy_corr(p_a, p_b, rho, spread) * math.sqrt(
        _problem_var(p_a, spread) * _problem_var(p_b, spread)
    )
    share = min(want / comonotone, 1.0) if comonotone > 0 else 0.0
    u = rng.random(n)
    v = np.where(rng.random(n) < share, u, rng.random(n))
    return a.ppf(u), b.ppf(v)


def _beta(p: float, spread: float):
    var = _problem_var(p, spread)
    common = p * (1 - p) / var - 1
    return st.beta(max(p * common, 1e-3), max((1 - p) * common, 1e-3))
