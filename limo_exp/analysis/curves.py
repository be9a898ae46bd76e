"""Less-is-more curves: accuracy vs the number of training examples N, one line per setting with
its interval band and fitted curve, untrained baselines as dashed lines; and grouped bars of the
settings at a fixed N. Each figure is written as PNG and PDF.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from limo_exp.analysis import stats
from limo_exp.analysis.study import Study
from limo_exp.analysis.tables import Row, short


def line_fits(study: Study, opts) -> dict[tuple[str, str], stats.Fit | str]:
    """(setting label, task) -> the fitted line, or why there is none."""
    out: dict[tuple[str, str], stats.Fit | str] = {}
    tuned = study.points("run")
    for label in sorted({p.label() for p in tuned}):
        pts = [p for p in tuned if p.label() == label]
        for task in study.tasks():
            if len({p.n for p in pts}) < 3:
                out[(label, task)] = f"{len({p.n for p in pts})} value(s) of N: no fit (needs 3)"
                continue
            common = set.intersection(*(set(study.array(p.run_ids, task)[1]) for p in pts))
            items = sorted(common)
            if not items:
                out[(label, task)] = "no problem evaluated at every N: no fit"
                continue
            per_n = {p.n: study.per_problem(p.run_ids, task, items)[0] for p in pts}
            try:
                out[(label, task)] = stats.fit_with_interval(
                    per_n, n_boot=opts.fit_boot, level=opts.level, seed=opts.seed
                )
            except stats.NoFit as e:
                out[(label, task)] = f"no fit: {e}"
    return out


def _save(fig, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def plot_curves(study: Study, rows: list[Row], fits: dict, stem: Path, caption: str) -> list[Path]:
    """One panel per benchmark (accuracy) and one per benchmark for the share of responses with
    an answer (how fast the format is learned)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = study.tasks()
    panels = [(t, "accuracy") for t in tasks] + [(t, "answered") for t in tasks]
    panels = [(t, k) for t, k in panels if k == "accuracy" or f"eval/{t}/no_answer" in study.frame.columns]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    measured = [r for r in rows if not r.reported]
    tuned = [r for r in measured if r.point.kind == "run"]
    labels = sorted({r.point.label() for r in tuned})
    colors = dict(zip(labels, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10))
    ns = sorted({r.n for r in tuned})
    for ax, (task, what) in zip(axes[0], panels):
        for r in (r for r in measured if r.point.kind == "eval"):
            y = (
                r.cells[task].mean
                if what == "accuracy" and task in r.cells
                else study.answered(r.run_ids, task)
            )
            if y is not None:
                ax.axhline(y, ls="--", lw=1, color="grey", label=f"{r.label}")
        for label in labels:
            line = sorted((r for r in tuned if r.point.label() == label), key=lambda r: r.n)
            if what == "accuracy":
                line = [r for r in line if task in r.cells]
                x = np.array([r.n for r in line])
                y = np.array([r.cells[task].mean for r in line])
                lo = np.array([r.cells[task].low for r in line])
                hi = np.array([r.cells[task].high for r in line])
                ax.fill_between(x, lo, hi, color=colors[label], alpha=0.15, lw=0)
                fit = fits.get((label, task))
                name = label
                if isinstance(fit, stats.Fit):
                    grid = np.geomspace(x.min(), x.max(), 50)
                    ax.plot(grid, fit.predict(grid), ls=":", lw=1, color=colors[label])
                    if fit.n95 is not None:
                        name += f" (N95 ≈ {fit.n95:.0f})"
            else:
                x = np.array([r.n for r in line])
                shares = [study.answered(r.run_ids, task) for r in line]
                y = np.array([np.nan if v is None else v for v in shares])  # 0 answered is a point
                name = label
            ax.plot(x, y, marker="o", color=colors[label], label=name)
        if ns:
            ax.set_xscale("log")
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("training examples N (log)")
        ax.set_ylabel("accuracy" if what == "accuracy" else "answered (boxed answer found)")
        ax.set_title(f"{short(task)}" + (" — answered" if what == "answered" else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("less is more: accuracy vs. number of curated training examples")
    fig.text(0.5, 0.005, caption + "; dotted: fitted curve", ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(fig, stem)


def plot_bars(study: Study, rows: list[Row], stem: Path, caption: str) -> list[Path]:
    """Grouped bars of every setting at the largest N that at least two settings share (tiers,
    selection strategies); none when the study has one setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tuned = [r for r in rows if not r.reported and r.point.kind == "run"]
    by_n: dict[int, list[Row]] = {}
    for r in tuned:
        by_n.setdefault(r.n, []).append(r)
    shared = [n for n, rs in by_n.items() if len(rs) >= 2]
    if not shared:
        return []
    n = max(shared)
    group = sorted(by_n[n], key=lambda r: r.label)
    tasks = study.tasks()
    width = 0.8 / len(group)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(tasks) * len(group) / 2 + 2), 4))
    for i, r in enumerate(group):
        x = np.arange(len(tasks)) + (i - (len(group) - 1) / 2) * width
        y = [r.cells[t].mean if t in r.cells else np.nan for t in tasks]
        err = np.array(
            [
                [r.cells[t].mean - r.cells[t].low, r.cells[t].high - r.cells[t].mean]
                if t in r.cells
                else [0, 0]
                for t in tasks
            ]
        ).T
        ax.bar(x, y, width, yerr=err, capsize=3, label=r.label)
    ax.set_xticks(np.arange(len(tasks)), [short(t) for t in tasks])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(f"settings at N = {n}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.text(0.5, 0.005, caption, ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, stem)
