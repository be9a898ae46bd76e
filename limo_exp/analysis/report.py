"""``report``: the MLflow runs of a study -> tidy DataFrame -> less-is-more curve, table and CSV."""

from __future__ import annotations

from pathlib import Path

from limo_exp.analysis.curves import plot_curve
from limo_exp.analysis.tables import write_table
from limo_exp.config import TrackingConfig
from limo_exp.tracking.runs import runs_frame


def report(tracking: TrackingConfig, results_dir: str | Path) -> dict:
    """Write ``<results_dir>/<study>/`` curve.png, table.md and runs.csv; return them and the frame."""
    out = Path(results_dir) / tracking.experiment
    out.mkdir(parents=True, exist_ok=True)
    df = runs_frame(tracking)
    df.to_csv(out / "runs.csv", index=False)
    return {
        "runs": len(df),
        "curve": plot_curve(df, out / "curve.png"),
        "table": write_table(df, out / "table.md"),
        "csv": out / "runs.csv",
        "frame": df,
    }
