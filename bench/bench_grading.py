"""How much of evaluation's wall time goes to grading? Goal: under 5%.

    python bench/bench_grading.py [--limit 10] [--max-gen-toks 128] [--data-dir ../shared/data/eval]

1. Runs limo_exp.evaluation.evaluate with the tiny random model (CPU) on limo_math500 (local
   files) or limo_synthetic, timing every grading call: the measured share of that run.
2. The tiny model writes gibberish without boxes, which is cheap to grade; so it also grades
   realistic responses (the MATH-500 reference solutions, against the right and a wrong
   answer, caches cleared) and projects the share with that cost per response.
Writes results/bench/grading.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from limo_exp.evaluation import grading

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "eval"


class Timed:
    """Wraps the grading entry points with a clock (lm-eval's task utils import them at task load)."""

    def __init__(self):
        self.seconds, self.calls = 0.0, 0
        self._orig = {n: getattr(grading, n) for n in ("grade_math_detailed", "grade_choice_detailed")}

    def __enter__(self):
        for name, fn in self._orig.items():
            setattr(grading, name, self._wrap(fn))
        return self

    def _wrap(self, fn):
        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds += time.perf_counter() - t
                self.calls += 1

        return timed

    def __exit__(self, *exc):
        for name, fn in self._orig.items():
            setattr(grading, name, fn)


def realistic_grading_cost(data_dir: Path) -> dict:
    rows = [json.loads(line) for line in (data_dir / "math500.jsonl").open()]
    grading._parse_cached.cache_clear()
    times = []
    for i, row in enumerate(rows):
        wrong = rows[(i + 1) % len(rows)]["answer"]
        for gold in (row["answer"], wrong):
            t = time.perf_counter()
            grading.grade_math_detailed(row["solution"], gold)
            times.append(time.perf_counter() - t)
    times.sort()
    return {
        "responses": len(times),
        "mean_ms": 1000 * statistics.mean(times),
        "p99_ms": 1000 * times[int(0.99 * (len(times) - 1))],
        "max_ms": 1000 * times[-1],
    }


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--max-gen-toks", type=int, default=128)
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "grading.json"))
    args = ap.parse_args()

    from limo_exp.config import EvalConfig, SyntheticConfig
    from limo_exp.evaluation.evaluate import evaluate
    from limo_exp.training.models import build_tiny_random

    data_dir = Path(args.data_dir)
    have_data = (data_dir / "math500.jsonl").exists()
    task = "limo_math500" if have_data else "limo_synthetic"
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_random(Path(tmp) / "tiny_random")
        with Timed() as clock:
            t0 = time.perf_counter()
            suite = EvalConfig(
                tasks=[task],
                data_dir=str(data_dir) if have_data else None,
                limit=args.limit,
                max_gen_toks=args.max_gen_toks,
                synthetic=SyntheticConfig(n=args.limit),
            )
            result = evaluate(str(model), suite)
            wall = time.perf_counter() - t0
    n = len(result.samples[task])
    report = {
        "task": task,
        "responses": n,
        "max_gen_toks": args.max_gen_toks,
        "eval_wall_s": wall,
        "grading_s": clock.seconds,
        "grading_calls": clock.calls,
        "grading_share": clock.seconds / wall,
        "grader_version": grading.GRADER_VERSION,
        "math_verify_version": grading.MATH_VERIFY_VERSION,
    }
    if have_data:
        cost = realistic_grading_cost(data_dir)
        gen_per_response = (wall - clock.seconds) / max(n, 1)
        g = cost["mean_ms"] / 1000
        report["realistic_grading"] = cost
        report["projected_share_tiny_model_speed"] = g / (g + gen_per_response)
        report["note"] = (
            "projected share uses the tiny random model's generation time per response, "
            "far shorter than a real model's: an upper bound for real runs"
        )
    report["goal_met"] = (
        max(report["grading_share"], report.get("projected_share_tiny_model_speed", 0)) < 0.05
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
