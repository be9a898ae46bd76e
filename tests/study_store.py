"""A throwaway MLflow store holding a small study with known per-problem outcomes: an untrained
baseline, two solution tiers at N = 8, 16, 32, 64, two seeds each, two benchmarks. The chance to
solve problem i at N follows a saturating curve (higher for ``long``), so the report has real
effects, intervals and fits to compute; every run has graded samples as an artifact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from limo_exp.tracking.tracker import Tracker

TASKS = {"limo_aime24": 30, "limo_math500": 60}
NS = (8, 16, 32, 64)
PLATEAU = {"short": 0.45, "long": 0.8}
PROTOCOL = {
    "eval.temperature": "0.0",
    "eval.top_p": "1.0",
    "eval.num_samples": "1",
    "eval.max_gen_toks_requested": "512",
    "eval.instruction": "box it",
    "eval.system_prompt": "",
    "eval.grader_version": "3",
    "eval.gpqa_seed": "0",
}


def chance(tier: str | None, n: int) -> float:
    if n == 0:
        return 0.1
    return PLATEAU[tier] - (PLATEAU[tier] - 0.1) * (n / 8) ** -0.7


def outcomes(tier: str | None, n: int, seed: int, task: str) -> list[bool]:
    """Problem i is solved when its fixed difficulty is below the chance at (tier, N), with a
    little seed noise: a stronger setting solves a superset, as a real curve roughly does."""
    k = TASKS[task]
    rng = np.random.default_rng(int(hashlib.sha256(f"{task}".encode()).hexdigest()[:8], 16))
    difficulty = rng.random(k)
    noise = np.random.default_rng(seed * 1000 + n).normal(0, 0.05, k)
    return list(difficulty + noise < chance(tier, n))


def log_run(t: Tracker, tmp: Path, name: str, tags: dict, params: dict, results: dict, metrics=None) -> str:
    """Log one finished run: ``results`` maps task -> list of per-problem outcomes (problem i is
    ``<task>-i``) or -> {item id: outcome}; ``tags`` may override the protocol tags."""
    with t.run(name, PROTOCOL | tags):
        t.log_params(params)
        m = dict(metrics or {})
        for task, solved in results.items():
            solved = solved if isinstance(solved, dict) else {f"{task}-{i}": c for i, c in enumerate(solved)}
            m[f"eval/{task}/exact_match"] = float(np.mean(list(solved.values())))
            m[f"eval/{task}/no_answer"] = 0.0
            f = tmp / t.run_id / f"samples_{task}.jsonl"
            f.parent.mkdir(parents=True, exist_ok=True)
            rows = [
                {"task": task, "id": i, "canonical_id": f"c-{i}", "sample": 0, "correct": bool(c)}
                for i, c in solved.items()
            ]
            f.write_text("".join(json.dumps(r) + "\n" for r in rows))
            t.log_artifact(f, "eval")
        t.log_metrics(m)
        return t.run_id


def make_study(root: Path, experiment: str = "fake", tiers=("short", "long"), ns=NS, seeds=(0, 1)) -> dict:
    """Create the store under ``root``; return its uri and the run ids by (tier, N, seed)."""
    uri = f"sqlite:///{root}/mlruns.db"
    t = Tracker(uri, experiment, str(root / "artifacts"))
    tmp = root / "files"
    ids = {}
    base = {"limo.run_key": "b" * 20, "limo.kind": "eval"}
    results = {task: outcomes(None, 0, 0, task) for task in TASKS}
    cost = {"cost/eval_seconds": 60.0, "cost/eval_device_hours": 60 / 3600}
    ids[("base", 0, 0)] = log_run(
        t, tmp, "eval-base", base, {"model.name": "base", "seed": "0"}, results, cost
    )
    for tier in tiers:
        for n in ns:
            for seed in seeds:
                key = hashlib.sha256(f"{tier}{n}{seed}".encode()).hexdigest()[:20]
                params = {"model.name": "base", "pool.name": "pool", "quality.name": tier}
                params |= {"data.n_samples": str(n), "seed": str(seed), "train.lr": "1e-5"}
                results = {task: outcomes(tier, n, seed, task) for task in TASKS}
                metrics = cost | {
                    "cost/train_tokens": 300.0 * n,
                    "cost/device_hours": n / 3600,
                    "cost/train_flops_est": 6e9 * n,
                    "cost/curation_seconds": 2.0,
                    "curation/records_scanned": 1000,
                    "curation/pool_size": 400,
                    "train/final_loss": 1.0 / n,
                }
                if tier == "long":  # long solutions written by a teacher (limo-exp distill)
                    metrics |= {"cost/teacher_tokens": 5e5, "cost/teacher_seconds": 900.0}
                tags = {"limo.run_key": key, "limo.kind": "run"}
                ids[(tier, n, seed)] = log_run(t, tmp, f"{tier}-n{n}-s{seed}", tags, params, results, metrics)
    return {"uri": uri, "experiment": experiment, "ids": ids}
