"""Runs read back as a tidy DataFrame: the report's only door to MLflow."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from limo_exp.config import TrackingConfig
from limo_exp.identity import with_neutral_leaves
from limo_exp.tracking.names import KIND_TAG, LEGACY_KINDS, RUN_KEY_TAG, current_metrics, is_accuracy
from limo_exp.tracking.tracker import Tracker

METRIC_PREFIXES = ("eval/", "train/", "cost/", "curation/")


def open_store(tracking: TrackingConfig) -> Tracker:
    if not tracking.enabled or not tracking.uri:
        raise SystemExit("the report reads MLflow: tracking is disabled in this config")
    return Tracker(tracking.uri, tracking.experiment, create=False)


def runs_frame(tracking: TrackingConfig):
    """One row per FINISHED run of a configuration or a baseline evaluation (sweep parents
    excluded): run id, kind, params and metrics. ``data.n_samples`` is 0 for a baseline (an
    untrained model: ``limo.kind`` = eval). Metrics under current names (``<benchmark>/accuracy``
    for a store that logged ``eval/<task>/exact_match``)."""
    import pandas as pd

    store = open_store(tracking)
    rows, tags = [], {}
    for r in store.search("attributes.status = 'FINISHED'"):
        kind = r.tags.get(KIND_TAG, "run")
        kind = LEGACY_KINDS.get(kind, kind)
        if RUN_KEY_TAG not in r.tags or kind not in ("run", "eval"):
            continue
        row = {"run_id": r.run_id, "run_name": r.name, "run_key": r.tags[RUN_KEY_TAG], "kind": kind}
        row["start_time"] = r.start_time
        row |= with_neutral_leaves(r.params) if kind == "run" else r.params  # older runs: train.format=plain
        metrics = current_metrics(r.metrics)
        row |= {k: v for k, v in metrics.items() if k.startswith(METRIC_PREFIXES) or is_accuracy(k)}
        if kind == "eval":
            row["data.n_samples"] = 0
        rows.append(row)
        tags[r.run_id] = r.tags
    df = pd.DataFrame(rows)
    if df.empty:
        raise SystemExit(f"experiment {tracking.experiment!r} in {tracking.uri} has no FINISHED runs")
    df["data.n_samples"] = df["data.n_samples"].astype(int)
    # a rerun with force=true leaves two FINISHED runs of one key: keep the latest
    df = df.sort_values("start_time").drop_duplicates("run_key", keep="last").reset_index(drop=True)
    df.attrs["tags"] = {r["run_id"]: tags[r["run_id"]] for _, r in df.iterrows()}  # run id -> its tags
    return df


@dataclass
class SampleScores:
    """One run's graded samples: task -> item -> correctness per sample, and item -> the source's
    own id. Items are keyed by canonical id (the same problem from the hub or a local file); runs
    logged before samples carried one are keyed by the source id."""

    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    source_ids: dict[str, dict[str, str]] = field(default_factory=dict)


def sample_scores(store: Tracker, run_id: str, cache: Path) -> SampleScores:
    """Read ``eval/samples_<task>.jsonl`` of a run (downloaded once into ``cache/<run_id>``)."""
    folder = cache / run_id
    files = sorted(folder.glob("samples_*.jsonl")) if folder.is_dir() else []
    if not files:
        files = [f for f in store.download(run_id, "eval", folder) if f.name.startswith("samples_")]
    out = SampleScores()
    for f in sorted(files):
        task = f.stem.removeprefix("samples_")
        scores, ids = out.scores.setdefault(task, {}), out.source_ids.setdefault(task, {})
        for line in f.read_text().splitlines():
            row = json.loads(line)
            item = str(row.get("canonical_id") or row["id"])
            scores.setdefault(item, []).append(float(bool(row["correct"])))
            ids[item] = str(row["id"])
    return out
