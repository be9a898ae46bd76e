"""The study as a Markdown table; every row carries the MLflow run id it came from."""

from __future__ import annotations

from pathlib import Path

from limo_exp.analysis.curves import panels, setting_columns


def write_table(df, out: Path) -> Path:
    fixed = ["model.name", "pool.name", "quality.name", "data.n_samples", "seed"]
    cols = [c for c in fixed if c in df.columns] + [c for c in setting_columns(df) if c not in fixed]
    metrics = [c for c, _ in panels(df)]
    extra = [c for c in ["train/final_loss", "train/tokens_per_s"] if c in df.columns]
    t = df.sort_values(cols)[cols + metrics + extra + ["run_id"]]
    header = "| " + " | ".join(c.removeprefix("eval/") for c in t.columns) + " |"
    lines = [header, "|" + "---|" * len(t.columns)]
    for _, row in t.iterrows():
        cells = ["-" if _missing(v) else f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values]
        lines.append("| " + " | ".join(cells) + " |")
    out.write_text("\n".join(lines) + "\n")
    return out


def _missing(v) -> bool:  # a baseline has no pool, tier or training params
    return v is None or (isinstance(v, float) and v != v)
