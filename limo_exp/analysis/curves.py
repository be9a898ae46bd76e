"""Less-is-more curves: accuracy (and answered share) vs the number of training examples N,
one line per distinct setting, untrained baselines as dashed lines."""

from __future__ import annotations

from pathlib import Path

from limo_exp.identity import is_semantic


def setting_columns(df) -> list[str]:
    """The config params that differ between the fine-tuned runs (N and seed aside): one curve each.

    Runs that differ in anything but the seed are never averaged together."""
    tuned = df[df["kind"] == "run"]
    params = [
        c for c in df.columns if "." in c and not c.startswith(("eval/", "train/", "cost/", "curation/"))
    ]
    axes = ("seed", "data.n_samples")  # the curve's x axis and the spread of each point
    return [c for c in params if is_semantic(c) and c not in axes and tuned[c].astype(str).nunique() > 1]


def accuracy_columns(df) -> list[str]:
    return sorted(c for c in df.columns if c.startswith("eval/") and c.endswith("/exact_match"))


def panels(df) -> list[tuple[str, str]]:
    """(column, y label) per panel: accuracy for every task, then the share of responses with an
    extractable answer (1 - no_answer), which shows how fast the answer format is learned."""
    out = [(c, "accuracy") for c in accuracy_columns(df)]
    for c in accuracy_columns(df):
        no_answer = c.removesuffix("/exact_match") + "/no_answer"
        if no_answer in df.columns:
            df[c.removesuffix("/exact_match") + "/answered"] = 1.0 - df[no_answer]
            out.append((c.removesuffix("/exact_match") + "/answered", "answered (boxed answer found)"))
    return out


def plot_curve(df, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = panels(df)
    fig, axes = plt.subplots(1, max(1, len(cols)), figsize=(5 * max(1, len(cols)), 4), squeeze=False)
    groups = setting_columns(df) or ["quality.name"]
    base = df[df["kind"] == "eval"]  # untrained baselines (limo-exp eval): dashed lines
    tuned = df[df["kind"] == "run"]
    for ax, (metric, ylabel) in zip(axes[0], cols):
        for _, row in base.dropna(subset=[metric]).iterrows():
            label = f"{row.get('model.name', 'base')} (no training)"
            ax.axhline(row[metric], ls="--", lw=1, color="grey", label=label)
        for label, g in tuned.groupby(groups):
            stats = g.groupby("data.n_samples")[metric].agg(["mean", "sem", "count"]).reset_index()
            err = stats["sem"].fillna(0.0) if (stats["count"] > 1).any() else None
            name = " / ".join(map(str, label if isinstance(label, tuple) else (label,)))
            ax.errorbar(stats["data.n_samples"], stats["mean"], yerr=err, marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ns = sorted(tuned["data.n_samples"].unique())
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("training examples N (log)")
        ax.set_ylabel(ylabel)
        ax.set_title(metric.removeprefix("eval/"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("less is more: evaluation vs. number of curated training examples")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
