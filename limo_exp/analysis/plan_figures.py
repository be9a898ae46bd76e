"""The figures of ``limo-exp plan`` (``analysis/plan.py`` holds the records and writes them):
the store's earlier runs as rates, and what each benchmark's comparison can detect with the
cheapest fixes. Device-hours: ``analysis/plan_time.py``; training memory: ``analysis/plan_memory.py``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from limo_exp.analysis import power as pw
from limo_exp.analysis.plan import Detect, mdd_text
from limo_exp.data.benchmarks import PUBLISHED_SIZES
from limo_exp.hardware import gpu
from limo_exp.tracking.names import accuracies, task_of

# what pooling a small benchmark with its neighbours adds (the cheapest fix for AIME-sized suites)
NEIGHBOURS = ("aime24", "aime25", "amc23")


# ---- the store's earlier runs ---------------------------------------------------------------


@dataclass
class History:
    """Figures of earlier FINISHED runs of the study: per (model, device) seconds per trained token,
    per (model, device, task) generated tokens/s, per (model, task) accuracy and response length."""

    train_seconds_per_token: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    gen_tokens_per_s: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    accuracy: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    response_tokens: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    @classmethod
    def of(cls, runs) -> History:
        h = cls()
        for r in runs:
            model = r.params.get("model.name", "")
            device = run_device(r.tags.get("hardware.gpus", ""))
            m = r.metrics
            if m.get("train/seen_tokens") and m.get("cost/device_hours"):
                per = m["cost/device_hours"] * 3600 / m["train/seen_tokens"]
                h.train_seconds_per_token.setdefault((model, device), []).append(per)
            if r.tags.get("limo.kind") == "eval":  # the untrained model's headline, in any store's names
                for name, value in accuracies(m).items():
                    if value == value:
                        h.accuracy.setdefault((model, task_of(name)), []).append(value)
            for name, value in m.items():
                parts = name.split("/")
                if len(parts) != 3 or parts[0] != "eval" or value != value:  # NaN: nothing measured
                    continue
                task, metric = parts[1], parts[2]
                if metric == "gen_tokens_per_s" and value > 0:
                    h.gen_tokens_per_s.setdefault((model, device, task), []).append(value)
                elif metric == "response_tokens_mean":
                    h.response_tokens.setdefault((model, task), []).append(value)
        return h


def run_device(gpus_tag: str) -> str:
    """A run's device as the plan names devices: its first GPU's data-sheet name, else cpu."""
    first = gpus_tag.split(",")[0].strip()
    if not first or first == "none":
        return "cpu"
    spec = gpu(first)
    return spec.name if spec else first


def _median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


# ---- what a comparison can detect ------------------------------------------------------------


def protocol(samples: int, pass_k: list[int], temperature: float) -> str:
    if samples == 1:
        return "greedy, one sample" if temperature == 0 else "one sample"
    extra = f", pass@{max(pass_k)}" if max(pass_k) > 1 else ""
    return f"mean@{samples}{extra}"


@dataclass(frozen=True)
class Runs:
    """What the fixes are priced on: seeds a setting (the report averages them per problem), the
    sweep's settings, and one run's device-hours (a training and its evaluation)."""

    seeds: int = 1
    settings: int = 1
    run_hours: float | None = None

    @property
    def total(self) -> int:
        return self.seeds * self.settings


SUITE = "suite mean"


def detect_all(
    sizes: dict[str, int],
    samples: dict[str, int],
    baselines: dict[str, tuple[float, str]],
    proto: dict[str, str],
    opts,
    eval_cost: dict[str, float | None],
    runs: Runs,
) -> list[Detect]:
    """Per benchmark and for the suite's headline (the unweighted mean over its benchmarks, as the
    report's average column), between two settings of ``runs.seeds`` runs each: the minimum
    detectable gain at ``opts.power`` and ``opts.alpha`` for the report's paired test, and for
    those that cannot resolve ``opts.wanted_difference``, the cheapest fixes with their cost
    (``eval_cost``: a run's evaluation device-hours per benchmark)."""
    out, kw, seeds = [], {"power": opts.power, "alpha": opts.alpha}, runs.seeds
    for bench, n in sizes.items():
        base, where = baselines[bench]
        k = samples[bench]
        d = pw.detectable(n, base, samples=k, seeds=seeds, **kw)
        row = Detect(bench, n, k, proto[bench], base, where, d.difference, d.test, seeds=seeds)
        if d.difference is None or d.difference > opts.wanted_difference:

            def mdd(more, s, problems=n, base=base, k=k):
                return pw.detectable(problems, base, samples=max(k, more), seeds=s, **kw)

            cost = {bench: eval_cost.get(bench)}
            row.fixes = _fixes(mdd, bench, n, {bench: k}, sizes, cost, runs)
        out.append(row)
    if len(sizes) > 1:

        def suite(more, s, problems=None):
            benches = [(sizes[b], baselines[b][0], max(samples[b], more) * s) for b in sizes]
            return pw.suite_detectable(benches, **kw)

        d = suite(1, seeds)
        protocols = sorted(set(proto.values()))
        row = Detect(
            SUITE,
            sum(sizes.values()),
            min(samples.values()),
            f"unweighted mean of {len(sizes)} benchmarks ({', '.join(protocols)})",
            d.baseline,
            "the benchmarks' baselines, unweighted",
            d.difference,
            d.test,
            seeds=seeds,
        )
        if d.difference is None or d.difference > opts.wanted_difference:
            row.fixes = _fixes(suite, SUITE, d.n, samples, sizes, eval_cost, runs)
        out.append(row)
    return out


def _fixes(mdd, bench, n, samples, sizes, cost, runs: Runs) -> list[str]:
    """More samples a problem, pooling AIME-sized benchmarks, more seeds (each seed a run: a
    training and its evaluation), each with the gain it detects (``mdd(samples, seeds, problems)``)
    and the device-hours it adds to the sweep, cheapest first (unknown costs last)."""
    fixes: list[tuple[float | None, str]] = []
    every = f"over the sweep's {runs.total} run{'s' * (runs.total > 1)}"
    k = min(samples.values())
    for more in (8, 16, 64):
        if more > k:
            d = mdd(more, runs.seeds)
            parts = [
                None if cost[b] is None else cost[b] * (max(more, samples[b]) / samples[b] - 1)
                for b in samples
            ]
            extra = None if None in parts else sum(parts) * runs.total
            fixes.append(
                (extra, f"{more} samples a problem (mean@{more}): {mdd_text(d)}, {_cost(extra)} {every}")
            )
            break
    if bench in NEIGHBOURS:
        pooled = sum(PUBLISHED_SIZES[b] for b in NEIGHBOURS)
        d = mdd(1, runs.seeds, pooled)
        added = [b for b in NEIGHBOURS if b not in sizes]
        what = f"adding {' and '.join(added)}" if added else f"pooling {', '.join(NEIGHBOURS)}"
        extra = (
            0.0
            if not added
            else None
            if cost[bench] is None
            else cost[bench] / n * sum(PUBLISHED_SIZES[b] for b in added) * runs.total
        )
        fixes.append(
            (extra, f"{what} ({pooled} problems): {mdd_text(d)}, {_cost(extra)}{f' {every}' * bool(extra)}")
        )
    more_seeds = 3 if runs.seeds < 3 else runs.seeds * 2
    d = mdd(1, more_seeds)
    new_runs = (more_seeds - runs.seeds) * runs.settings
    extra = None if runs.run_hours is None else runs.run_hours * new_runs
    fixes.append(
        (
            extra,
            f"{more_seeds} seeds a setting, averaged per problem ({new_runs} more run{'s' * (new_runs > 1)}, "
            f"each a training and its evaluation): {mdd_text(d)}, {_cost(extra)}",
        )
    )
    return [text for _, text in sorted(fixes, key=lambda f: float("inf") if f[0] is None else f[0])]


def _cost(hours: float | None) -> str:
    from limo_exp.analysis.plan import hours_text

    if hours == 0:
        return "no extra cost (all are in the suite)"
    return "+? device-hours" if hours is None else f"+{hours_text(hours)} device-hours"
