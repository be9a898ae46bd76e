"""``limo-exp report``: MLflow runs of a study -> tidy DataFrame -> less-is-more curve and table.

Every row of the table carries the MLflow run id it came from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from limo_exp import CONF_DIR
from limo_exp.spec import is_semantic

log = logging.getLogger("limo_exp")


def setting_columns(df) -> list[str]:
    """The config params that differ between the fine-tuned runs (N and seed aside): one curve each.

    Runs that differ in anything but the seed are never averaged together."""
    tuned = df[df["data.n_samples"] > 0]
    params = [
        c for c in df.columns if "." in c and not c.startswith(("eval/", "train/", "cost/", "curation/"))
    ]
    axes = ("seed", "data.n_samples")  # the curve's x axis and the spread of each point
    return [c for c in params if is_semantic(c) and c not in axes and tuned[c].astype(str).nunique() > 1]


def runs_frame(uri: str, experiment: str):
    """One row per FINISHED configuration run (sweep parents excluded): params and metrics."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no MLflow experiment {experiment!r} in {uri}: run the study first")
    rows = []
    for r in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=50000):
        if "limo.run_key" not in r.data.tags:
            continue
        row = {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "run_key": r.data.tags["limo.run_key"],
            "start_time": r.info.start_time,
        }
        row |= dict(r.data.params)
        row |= {k: v for k, v in r.data.metrics.items() if k.startswith(("eval/", "train/"))}
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        raise SystemExit(f"experiment {experiment!r} in {uri} has no FINISHED runs")
    df["data.n_samples"] = df["data.n_samples"].astype(int)
    # a rerun with force=true leaves two FINISHED runs of one key: keep the latest
    return df.sort_values("start_time").drop_duplicates("run_key", keep="last").reset_index(drop=True)


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
    base = df[df["data.n_samples"] == 0]  # eval-only baselines (limo-exp eval): dashed lines
    tuned = df[df["data.n_samples"] > 0]
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


def write_table(df, out: Path) -> Path:
    fixed = ["model.name", "pool.name", "quality.name", "data.n_samples", "seed"]
    cols = [c for c in fixed if c in df.columns] + [c for c in setting_columns(df) if c not in fixed]
    metrics = [c for c, _ in panels(df)]
    extra = [c for c in ["train/final_loss", "train/tokens_per_s"] if c in df.columns]
    t = df.sort_values(cols)[cols + metrics + extra + ["run_id"]]
    header = "| " + " | ".join(c.removeprefix("eval/") for c in t.columns) + " |"
    lines = [header, "|" + "---|" * len(t.columns)]
    for _, row in t.iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values]
        lines.append("| " + " | ".join(cells) + " |")
    out.write_text("\n".join(lines) + "\n")
    return out


def report(uri: str, experiment: str, results_dir: Path) -> dict:
    out = Path(results_dir) / experiment
    out.mkdir(parents=True, exist_ok=True)
    df = runs_frame(uri, experiment)
    df.to_csv(out / "runs.csv", index=False)
    return {
        "runs": len(df),
        "curve": plot_curve(df, out / "curve.png"),
        "table": write_table(df, out / "table.md"),
        "csv": out / "runs.csv",
        "frame": df,
    }


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    uri = cfg.tracking.uri
    if not cfg.tracking.enabled or not uri:
        raise SystemExit("report reads MLflow: tracking is disabled in this config")
    out = report(uri, cfg.tracking.experiment, Path(cfg.paths.results_dir))
    store = uri.removeprefix("sqlite:///")
    print(f"\n{out['runs']} runs of study {cfg.tracking.experiment!r}")
    print(Path(out["table"]).read_text())
    print(f"MLflow store : {uri}")
    print(f"curve        : {out['curve']}")
    print(f"table        : {out['table']}")
    if uri.startswith("sqlite:///"):
        print(
            f"open the UI  : mlflow ui --backend-store-uri sqlite:///{Path(store).resolve()} --host 127.0.0.1 --port 5000"
        )
    else:
        print(f"open the UI  : {uri}")


def main() -> None:
    _hydra_main()
