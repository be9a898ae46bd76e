"""Two systems on a suite's headline: the unweighted mean of its benchmarks' accuracies (the
tables' average column, ``limo-exp plan``'s suite row), tested as ``power.suite_power`` prices it.
Per benchmark, ``stats.paired``; over them, this.

    suite_mean.paired({"aime24": (a, b), "math500": (a, b)})   # diff, ci_low, ci_high, t, df, p_value
"""

from __future__ import annotations

import math

import numpy as np


def paired(per_task: dict, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Two systems on a suite's headline, the unweighted mean of its benchmarks' accuracies (the
    tables' average column, the plan's suite row): ``per_task`` maps a benchmark to ``(a, b)``, its
    per-problem scores on the problems both evaluated. ``diff`` = the mean over benchmarks of
    mean(a) - mean(b); its variance the sum of the benchmarks' (sample variance of the paired
    differences / n) over B^2; ``p_value``: two-sided t with Welch-Satterthwaite degrees of freedom
    (what ``power.suite_power`` plans with); the interval: a percentile bootstrap resampling the
    problems of each benchmark apart. One benchmark is the paired t test."""
    from scipy.stats import t as student_t

    if not per_task:
        raise ValueError("suite_mean.paired needs at least one benchmark")
    diffs = {}
    for task, (a, b) in per_task.items():
        x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if x.shape != y.shape or x.ndim != 1 or x.size < 2:
            raise ValueError(
                f"{task}: suite_mean.paired needs two equal-length lists of at least 2 per-problem scores; "
                f"got {x.shape} and {y.shape}"
            )
        diffs[task] = (x, y, x - y)
    b = len(diffs)
    diff = sum(d.mean() for _, _, d in diffs.values()) / b
    parts = [d.var(ddof=1) / d.size / (b * b) for _, _, d in diffs.values()]
    se = math.sqrt(sum(parts))
    if se == 0:  # every problem of every benchmark differs by the same amount
        df = float(sum(d.size - 1 for _, _, d in diffs.values()))
        t, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    else:
        df = sum(parts) ** 2 / sum(v * v / (d.size - 1) for v, (_, _, d) in zip(parts, diffs.values()))
        t = diff / se
        p = float(2 * student_t.sf(abs(t), df))
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for _, _, d in diffs.values():
        boot += d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1) / b
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return {
        "benchmarks": b,
        "n": int(sum(d.size for _, _, d in diffs.values())),
        "acc_a": float(sum(x.mean() for x, _, _ in diffs.values()) / b),
        "acc_b": float(sum(y.mean() for _, y, _ in diffs.values()) / b),
        "diff": float(diff),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "t": float(t),
        "df": float(df),
        "p_value": p,
        "test": f"t on the mean of {b} benchmarks' paired differences (Satterthwaite df {df:.1f})",
    }
