"""Metrics over n samples per question (mean@n, unbiased pass@k, maj@k, standard errors). Their
MLflow names are ``tracking.names``' (``metric_name``, ``sampling_metric``)."""

from __future__ import annotations

import math

from limo_exp.evaluation.grading import equivalent
from limo_exp.tracking.names import COUNTS, eval_metric


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one question with c correct among n samples: 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_correct(verdicts: list[dict]) -> bool:
    """Vote over the extracted answers; samples with no answer don't vote. Answers are grouped by
    value, not spelling (``1/2``, ``0.5`` and ``\\frac{1}{2}`` are one vote; all correct answers
    are one class). Ties go to the class seen first. Right when the winning class is correct."""
    classes: list[list[dict]] = []
    for v in (v for v in verdicts if v.get("extracted")):
        for c in classes:
            if c[0]["correct"] == v["correct"] and (
                v["correct"] or equivalent(c[0]["extracted"], v["extracted"])
            ):
                c.append(v)
                break
        else:
            classes.append([v])
    if not classes:
        return False
    top = max(len(c) for c in classes)
    return next(c for c in classes if len(c) == top)[0]["correct"]


def mean_stderr(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std with n-1, over questions; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in values) / (n - 1)
    return mean, math.sqrt(var / n)


def sampling_metrics(per_question: list[list[dict]], pass_k: tuple[int, ...] | list[int]) -> dict[str, float]:
    """mean@n (+stderr), pass@k and maj@k (+stderr) for every k <= n, from per-question verdict lists."""
    n = min(len(v) for v in per_question)
    out: dict[str, float] = {}
    out["mean_at_n"], out["mean_at_n_stderr"] = mean_stderr(
        [sum(v["correct"] for v in vs) / len(vs) for vs in per_question]
    )
    for k in sorted(set(pass_k)):
        if k > n:
            continue
        out[f"pass_at_{k}"], out[f"pass_at_{k}_stderr"] = mean_stderr(
            [pass_at_k(len(vs), sum(v["correct"] for v in vs), k) for vs in per_question]
        )
        out[f"maj_at_{k}"], out[f"maj_at_{k}_stderr"] = mean_stderr(
            [float(majority_correct(vs[:k])) for vs in per_question]
        )
    return out


# a sample's grading status -> the counts it adds to (``answer_counts``): a response that ran out of
# tokens has no answer (whatever it contains), so it counts in ``n_no_answer`` and in ``n_truncated``
COUNTED = {
    "no_answer": ("n_no_answer",),
    "truncated": ("n_no_answer", "n_truncated"),
    "timeout": ("n_timeout",),
}


def answer_counts(task: str, rows: list[dict]) -> dict[str, float]:
    """Samples by what happened to them, as counts beside the tasks' shares of the same samples:
    ``n_samples``; ``n_no_answer``, those without an extracted answer, truncated ones included
    (``no_answer`` = n_no_answer / n per question, averaged); ``n_truncated``, those that ran out
    of ``max_gen_toks`` (``truncated``); ``n_timeout``, those whose grading hit the time limit
    (``timeout``)."""
    counts = dict.fromkeys(COUNTS, 0.0)
    for r in rows:
        counts["n_samples"] += 1
        for name in COUNTED.get(r.get("status"), ()):
            counts[name] += 1
    return {eval_metric(task, k): v for k, v in counts.items()}


def length_metrics(task: str, rows: list[dict]) -> dict[str, float]:
    """The token-efficiency columns: mean and median response tokens and thinking tokens where
    there are any (the share that ran out of tokens is the tasks' own ``truncated`` metric)."""
    import statistics

    n = [r["n_tokens"] for r in rows if r.get("n_tokens") is not None]
    if not n:
        return {}
    out = {
        f"eval/{task}/response_tokens_mean": statistics.fmean(n),
        f"eval/{task}/response_tokens_median": float(statistics.median(n)),
    }
    think = [r["think_tokens"] for r in rows if r.get("think_tokens") is not None]
    if think:
        out[f"eval/{task}/think_tokens_mean"] = statistics.fmean(think)
    return out
