"""Runs read back as a tidy DataFrame: the report's only door to MLflow."""

from __future__ import annotations

from limo_exp.config import TrackingConfig
from limo_exp.tracking.names import KIND_TAG, LEGACY_KINDS, RUN_KEY_TAG
from limo_exp.tracking.tracker import Tracker

METRIC_PREFIXES = ("eval/", "train/")


def runs_frame(tracking: TrackingConfig):
    """One row per FINISHED run of a configuration or a baseline evaluation (sweep parents
    excluded): run id, kind, params and metrics. ``data.n_samples`` is 0 for a baseline (an
    untrained model: ``limo.kind`` = eval)."""
    import pandas as pd

    if not tracking.enabled or not tracking.uri:
        raise SystemExit("the report reads MLflow: tracking is disabled in this config")
    store = Tracker(tracking.uri, tracking.experiment, create=False)
    rows = []
    for r in store.search("attributes.status = 'FINISHED'"):
        kind = r.tags.get(KIND_TAG, "run")
        kind = LEGACY_KINDS.get(kind, kind)
        if RUN_KEY_TAG not in r.tags or kind not in ("run", "eval"):
            continue
        row = {"run_id": r.run_id, "run_name": r.name, "run_key": r.tags[RUN_KEY_TAG], "kind": kind}
        row["start_time"] = r.start_time
        row |= r.params
        row |= {k: v for k, v in r.metrics.items() if k.startswith(METRIC_PREFIXES)}
        if kind == "eval":
            row["data.n_samples"] = 0
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        raise SystemExit(f"experiment {tracking.experiment!r} in {tracking.uri} has no FINISHED runs")
    df["data.n_samples"] = df["data.n_samples"].astype(int)
    # a rerun with force=true leaves two FINISHED runs of one key: keep the latest
    return df.sort_values("start_time").drop_duplicates("run_key", keep="last").reset_index(drop=True)
