"""Re-score stored responses with the current grader, without loading a model.

    summary = regrade_dir("outputs/runs/<key>/eval")   # reads samples_<task>.jsonl

Every sample row keeps its response, gold answer(s) and kind; a response that ran out of tokens
stays no answer. Writes ``regraded/samples_<task>.jsonl`` and ``regraded/summary.json`` (grader
version, accuracy before and after, the samples whose verdict changed) beside the inputs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from limo_exp.evaluation import grading
from limo_exp.evaluation.tasks.utils import grade_one


def _grade(row: dict) -> dict:
    if row.get("status") == "truncated" or row.get("finish") == "length":
        return {"response": row["response"], "extracted": None, "status": "truncated", "correct": False}
    gold = row["gold"] if isinstance(row["gold"], list) else [row["gold"]]
    doc = {"kind": row.get("kind", "math"), "answer": gold[0], "answers": gold}
    return grade_one(row["response"], doc)


def read_samples(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not a JSON line ({e.msg})") from None
        if "response" not in rows[-1] or "gold" not in rows[-1]:
            raise ValueError(f"{path}:{i}: a sample row needs 'response' and 'gold'")
    return rows


def regrade_dir(folder: str | Path) -> dict:
    folder = Path(folder)
    files = sorted(folder.glob("samples_*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no samples_<task>.jsonl in {folder}: nothing to regrade")
    out_dir = folder / "regraded"
    out_dir.mkdir(exist_ok=True)
    started = time.perf_counter()
    summary: dict = {"grader_version": grading.GRADER_VERSION, "tasks": {}}
    for f in files:
        task = f.stem.removeprefix("samples_")
        rows = read_samples(f)
        new_rows, changed = [], []
        for row in rows:
            v = _grade(row)
            if bool(v["correct"]) != bool(row.get("correct")):
                changed.append({"id": row.get("id"), "sample": row.get("sample"), "now": v["correct"]})
            new_rows.append(row | v | {"grader_version": grading.GRADER_VERSION})
        (out_dir / f.name).write_text("".join(json.dumps(r) + "\n" for r in new_rows))
        n = max(len(rows), 1)
        summary["tasks"][task] = {
            "samples": len(rows),
            "accuracy_before": sum(bool(r.get("correct")) for r in rows) / n,
            "accuracy_after": sum(bool(r["correct"]) for r in new_rows) / n,
            "changed": changed,
        }
    summary["seconds"] = time.perf_counter() - started
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
