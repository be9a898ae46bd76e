"""What a sweep's runs log beyond a single run's: which axes a point varies (its run's name), and
the parent's summary of its children (a table, the best headline accuracy)."""

from __future__ import annotations

import json
from pathlib import Path

from limo_exp.tracking.names import BEST_RUN_TAG, CHILD_TAG, SWEEP_SUMMARY, SWEPT_FILE, accuracies


def point_axes(sweep_folder: str | Path | None, overrides: list[str]) -> dict[str, str]:
    """This point's value of each axis its sweep varies (the axes the sweep's parent wrote into
    ``SWEPT_FILE``; the values from the job's own overrides): {} outside a sweep."""
    f = Path(sweep_folder) / SWEPT_FILE if sweep_folder else None
    if f is None or not f.exists():
        return {}
    mine = {}
    for o in overrides:
        key, _, value = str(o).partition("=")
        mine[key.lstrip("+~")] = value
    return {axis: mine[axis] for axis in json.loads(f.read_text()) if axis in mine}


def sweep_summary(children: list) -> tuple[list[dict], dict[str, float], str | None]:
    """A sweep's children (``TrackedRun``s) -> the rows of its summary table (name, run id, status,
    each headline accuracy), the best FINISHED child's accuracy per benchmark, and that child's
    run id on the first benchmark (None: no child has one)."""
    rows, best, best_run = [], {}, None
    heads = sorted({k for r in children for k in accuracies(r.metrics)})
    for r in sorted(children, key=lambda r: r.name):
        acc = accuracies(r.metrics)
        rows.append({"name": r.name, "run_id": r.run_id, "status": r.status} | {h: acc.get(h) for h in heads})
        for h, v in acc.items():
            if r.status == "FINISHED" and v == v and (h not in best or v > best[h]):
                best[h] = v
                best_run = r.run_id if h == heads[0] else best_run
    return rows, best, best_run


def log_sweep_summary(tracker, parent: str) -> list[dict]:
    """On a sweep's parent: the table ``sweep_summary.json`` of its children (run here, and those
    reused from an earlier launch: ``limo.child.*``), the best child's headline accuracy per
    benchmark under the children's own metric name, and ``limo.best_run``. Returns the rows."""
    children = {r.run_id: r for r in tracker.search(f"tags.`mlflow.parentRunId` = '{parent}'")}
    linked = [v for k, v in tracker.get(parent).tags.items() if k.startswith(CHILD_TAG)]
    children |= {i: tracker.get(i) for i in linked if i not in children}
    rows, best, best_run = sweep_summary(list(children.values()))
    if rows:
        tracker.log_table(rows, SWEEP_SUMMARY, run_id=parent)
    if best:
        tracker.log_metrics(best, run_id=parent)
        tracker.set_tags({BEST_RUN_TAG: best_run}, run_id=parent)
    return rows
