"""The statistics behind every number the report prints: intervals, paired tests, curve fits.

Correctness comes as per-problem scores: a bool or a float in [0, 1] per problem (the mean over
its samples when n > 1). Where a point has several seeds or samples, ``mean_interval`` takes the
full array (seeds x problems x samples) and resamples all three levels. The paired tests and the
curve fit lean on ``scipy.stats`` (bootstrap, binomtest, permutation_test) and ``scipy.optimize``;
the nested bootstrap is written here because scipy resamples one level only.

    stats.paired([1, 1, 0, 1], [0, 1, 0, 0])   # diff, ci_low, ci_high, p_value, n, a_only, b_only
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def pm(self) -> float:
        """Half the interval's width: what tables print as ±."""
        return (self.high - self.low) / 2


def method_note(n_boot: int, level: float, seed: int) -> str:
    """The caption every table and figure carries."""
    return (
        f"{level:.0%} intervals: percentile bootstrap over problems (and over seeds and samples "
        f"where a point has several), {n_boot:,} resamples, seed {seed}"
    )


def as_array(scores) -> np.ndarray:
    """Per-problem scores -> a float array seeds x problems x samples."""
    a = np.asarray(scores, dtype=float)
    if a.ndim == 1:
        a = a[None, :, None]
    elif a.ndim == 2:  # problems x samples
        a = a[None]
    if a.ndim != 3 or a.shape[1] == 0:
        raise ValueError(
            f"scores must be problems, problems x samples or seeds x problems x samples; got {a.shape}"
        )
    return a


def boot_means(scores, *, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """The bootstrap distribution of the mean: problems, then seeds, then the samples of each
    problem resampled with replacement (a level of size 1 is not resampled)."""
    a = as_array(scores)
    rng = np.random.default_rng(seed)
    s, p, k = a.shape
    probs = rng.integers(0, p, size=(n_boot, p))
    seeds = rng.integers(0, s, size=(n_boot, s)) if s > 1 else np.zeros((n_boot, 1), dtype=int)
    means = np.empty(n_boot)
    step = max(1, 2_000_000 // (s * p * k))  # resamples per vectorised chunk: bounded memory
    for i in range(0, n_boot, step):
        j = slice(i, min(i + step, n_boot))
        x = a[seeds[j][:, :, None], probs[j][:, None, :]]  # chunk x seeds x problems x samples
        if k > 1:
            x = np.take_along_axis(x, rng.integers(0, k, size=x.shape), axis=3)
        means[j] = x.mean(axis=(1, 2, 3))
    return means


def mean_interval(scores, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Mean accuracy with its nested percentile-bootstrap interval (``boot_means``)."""
    return _interval(float(as_array(scores).mean()), boot_means(scores, n_boot=n_boot, seed=seed), level)


def average_interval(per_task: list, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """The unweighted average over benchmarks (a table's "average" column), each benchmark
    resampled on its own."""
    dists = [boot_means(a, n_boot=n_boot, seed=seed + i) for i, a in enumerate(per_task)]
    mean = float(np.mean([as_array(a).mean() for a in per_task]))
    return _interval(mean, np.mean(dists, axis=0), level)


def _interval(mean: float, dist: np.ndarray, level: float) -> Interval:
    lo, hi = np.quantile(dist, [(1 - level) / 2, (1 + level) / 2])
    return Interval(mean, float(lo), float(hi))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs at 1/2."""
    from scipy.stats import binomtest

    n = a_only + b_only
    return 1.0 if n == 0 else float(binomtest(a_only, n, 0.5).pvalue)


def paired(a, b, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0, n_perm: int = 10000) -> dict:
    """Compare two systems on the same problems (equal-length per-problem correctness, bools or
    floats in [0, 1]). ``diff`` = mean(a) - mean(b) with a paired percentile-bootstrap interval;
    ``p_value``: exact McNemar when every score is 0 or 1, else a paired permutation test (signs
    of the per-problem differences flipped). ``a_only``/``b_only``: problems one solved and the
    other did not (a float score counts as solved above 1/2)."""
    from scipy.stats import bootstrap, permutation_test

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"paired needs two equal-length lists of per-problem scores; got {x.shape} and {y.shape}"
        )
    if x.size == 0:
        raise ValueError("paired needs at least one problem both sides evaluated")
    if ((x < 0) | (x > 1) | (y < 0) | (y > 1)).any():
        raise ValueError("per-problem scores must be in [0, 1]")
    d = x - y
    binary = bool(np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all())
    a_only, b_only = int(((x > 0.5) & (y <= 0.5)).sum()), int(((y > 0.5) & (x <= 0.5)).sum())
    if np.ptp(d) == 0:  # every difference equal: the interval is a point
        lo = hi = float(d[0])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = bootstrap(
                (d,),
                np.mean,
                n_resamples=n_boot,
                confidence_level=level,
                method="percentile",
                random_state=seed,
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if binary:
        p, test = mcnemar_exact(a_only, b_only), "exact McNemar"
    elif not d.any():
        p, test = 1.0, "paired permutation"
    else:
        perm = permutation_test(
            (x, y),
            lambda u, v, axis: np.mean(u - v, axis=axis),
            permutation_type="samples",
            n_resamples=n_perm,
            alternative="two-sided",
            random_state=seed,
            vectorized=True,
        )
        p, test = float(perm.pvalue), "paired permutation"
    return {
        "n": int(x.size),
        "acc_a": float(x.mean()),
        "acc_b": float(y.mean()),
        "diff": float(d.mean()),
        "ci_low": lo,
        "ci_high": hi,
        "p_value": p,
        "test": test,
        "a_only": a_only,
        "b_only": b_only,
    }


# ---- curves: accuracy as a function of the number of training examples N ----


def _power(n, a, b, c):
    return a - b * np.power(n, -c)


def _loglinear(n, a, b):
    return a + b * np.log(n)


@dataclass(frozen=True)
class Fit:
    """A fitted less-is-more line: ``kind`` is ``power`` (acc = a - b N^-c) or ``log-linear``
    (acc = a + b ln N); ``n95`` the N where a power law reaches 95% of its plateau ``a`` (None for
    a log-linear line, which has no plateau), with its bootstrap interval when one was drawn."""

    kind: str
    params: tuple[float, ...]
    aic: float
    n95: float | None = None
    n95_low: float | None = None
    n95_high: float | None = None

    def predict(self, n) -> np.ndarray:
        f = _power if self.kind == "power" else _loglinear
        return f(np.asarray(n, dtype=float), *self.params)

    def formula(self) -> str:
        if self.kind == "power":
            a, b, c = self.params
            return f"acc = {a:.3f} - {b:.3f} N^-{c:.3f}"
        a, b = self.params
        return f"acc = {a:.3f} + {b:.4f} ln N"


def _aic(resid: np.ndarray, k: int) -> float:
    n = resid.size
    sse = max(float((resid**2).sum()), 1e-12 * n)
    return n * math.log(sse / n) + 2 * k


def _n95(params) -> float | None:
    a, b, c = params
    if a <= 0 or b <= 0 or c <= 0:
        return None
    return float((b / (0.05 * a)) ** (1 / c))


class NoFit(ValueError):
    """Too few distinct N for a fit."""


def fit_curve(ns, accs) -> Fit:
    """Fit both forms to mean accuracy per N (N > 0) and keep the one with the lower AIC; the
    power law needs 4 distinct N (one more than its parameters), the log-linear line 3."""
    from scipy.optimize import curve_fit

    n, y = np.asarray(ns, dtype=float), np.asarray(accs, dtype=float)
    keep = n > 0
    n, y = n[keep], y[keep]
    if len(np.unique(n)) < 3:
        raise NoFit(f"{len(np.unique(n))} distinct N > 0: a fit needs at least 3")
    b, a = np.polyfit(np.log(n), y, 1)
    fits = [Fit("log-linear", (float(a), float(b)), _aic(y - _loglinear(n, a, b), 2))]
    if len(np.unique(n)) >= 4:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = curve_fit(
                    _power,
                    n,
                    y,
                    p0=(y.max(), max(y.max() - y.min(), 1e-3), 0.5),
                    bounds=([0.0, 0.0, 1e-3], [1.5, 10.0, 5.0]),
                    maxfev=20000,
                )
            p = tuple(float(v) for v in p)
            fits.append(Fit("power", p, _aic(y - _power(n, *p), 3), _n95(p)))
        except (RuntimeError, ValueError):
            pass
    return min(fits, key=lambda f: f.aic)


def fit_with_interval(
    points: dict[int, np.ndarray], *, n_boot: int = 300, level: float = 0.95, seed: int = 0
) -> Fit:
    """Fit a line given per-problem mean scores per N (problems aligned across N, the same
    benchmark), and bootstrap the N at 95% of the plateau by resampling problems."""
    ns = sorted(points)
    fit = fit_curve(ns, [points[n].mean() for n in ns])
    if fit.kind != "power" or n_boot == 0:
        return fit
    sizes = {points[n].size for n in ns}
    if len(sizes) != 1:
        return fit
    rng = np.random.default_rng(seed)
    m = np.stack([points[n] for n in ns])
    n95s = []
    for _ in range(n_boot):
        idx = rng.integers(0, m.shape[1], size=m.shape[1])
        try:
            f = fit_curve(ns, m[:, idx].mean(axis=1))
        except NoFit:
            continue
        if f.kind == "power" and f.n95 is not None:
            n95s.append(f.n95)
    if len(n95s) < n_boot / 2:  # most resamples have no plateau: no honest interval
        return fit
    lo, hi = np.quantile(n95s, [(1 - level) / 2, (1 + level) / 2])
    return Fit(fit.kind, fit.params, fit.aic, fit.n95, float(lo), float(hi))


def selection_bits(pool_size: int, n: int) -> float:
    """log2 C(pool, N): the information a choice of N examples out of the curated pool carries."""
    if not 0 <= n <= pool_size:
        return float("nan")
    return (math.lgamma(pool_size + 1) - math.lgamma(n + 1) - math.lgamma(pool_size - n + 1)) / math.log(2)
