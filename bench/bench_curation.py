"""Curation throughput without answer verification: 10k, 100k and 1M records on this machine.

    python bench/bench_curation.py                 # 10k, 100k, 1M
    python bench/bench_curation.py --sizes 10000   # just one size
    python bench/bench_curation.py --compare --sizes 100000 1000000   # numpy vs datasketch MinHash LSH

Records are synthetic problems whose numbers are re-drawn per clone (distinct problems, cheap to
make), with 1% exact and 1% near duplicates planted. Decontamination runs against the real eval
sets when ../shared/data/eval exists, else the synthetic eval set. Writes results/bench/curation.json.

``--compare`` runs the same curation with limo_exp's vectorised MinHash LSH (numpy) and with
datasketch's (bench/minhash_datasketch.py) in one process: a warm-up of both, then the engines
interleaved ``--reps`` times per size; it also measures each engine's recall and precision of
near-duplicate pairs on MATH train against exact 5-shingle Jaccard. Writes
results/bench/curation_compare.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import time
from dataclasses import replace
from pathlib import Path

from limo_exp.config import CurationConfig
from limo_exp.curation import curate, format_funnel
from limo_exp.data.records import Record, Solution, problem_id
from limo_exp.data.synthetic import make_pool

REPO = Path(__file__).resolve().parents[1]

TARGET = 5000  # records/s at 100k
_NUM = re.compile(r"\d+")


def make_records(n: int, seed: int = 0) -> list[Record]:
    base = make_pool(min(n, 5000), seed)
    rng = random.Random(seed)
    out: list[Record] = []
    for i in range(n):
        b = base[i % len(base)]
        if i < len(base):
            out.append(b)
            continue
        kind = rng.random()
        if kind < 0.01:  # exact duplicate (case and spacing differ)
            src = out[rng.randrange(len(out))]
            out.append(replace(src, problem=src.problem.upper() + "  "))
            continue
        if kind < 0.02:  # near duplicate: one word added
            src = out[rng.randrange(len(out))]
            p = (
                src.problem.replace(" is ", " is now ", 1)
                if " is " in src.problem
                else src.problem + " Explain."
            )
            out.append(replace(src, id=problem_id(p), problem=p))
            continue
        p = _NUM.sub(lambda m: str(rng.randint(2, 999)), b.problem)  # a new instance of the template
        sols = [Solution(s.text, s.kind, s.source) for s in b.solutions]
        out.append(Record(problem_id(p), p, b.answer, sols, dict(b.meta)))
    return out


def benchmarks() -> dict:
    from limo_exp.data.benchmarks import load_benchmark

    eval_dir = REPO.parent / "shared" / "data" / "eval"
    if eval_dir.exists():
        return {
            n: load_benchmark(n, eval_dir) for n in ("aime24", "aime25", "amc23", "math500", "olympiadbench")
        }
    return {"synthetic": load_benchmark("synthetic")}


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_start": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--out", default=None)
    ap.add_argument("--compare", action="store_true", help="numpy vs datasketch MinHash LSH, interleaved")
    ap.add_argument("--reps", type=int, default=2, help="--compare: runs of each engine per size")
    args = ap.parse_args()
    cfg = CurationConfig.from_dict({"verify": {"enabled": False}})  # default stages, verification off
    bench = benchmarks()
    if args.compare:
        from compare_engines import compare

        out = args.out or str(REPO / "results" / "bench" / "curation_compare.json")
        return compare(args.sizes, args.reps, cfg, bench, make_records, machine(), out)
    args.out = args.out or str(REPO / "results" / "bench" / "curation.json")
    rows = []
    for n in args.sizes:
        t0 = time.perf_counter()
        recs = make_records(n)
        t_make = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = curate(recs, cfg, bench)
        secs = time.perf_counter() - t0
        rows.append(
            {
                "records": n,
                "seconds": round(secs, 2),
                "records_per_s": round(n / secs),
                "kept": len(out.records),
                "make_seconds": round(t_make, 2),
                "funnel": out.funnel,
            }
        )
        print(f"\n{n:,} records: {secs:.1f} s, {n / secs:,.0f} records/s")
        print(format_funnel(out.funnel))
        del recs, out
    print(f"\n{'records':>10} {'seconds':>8} {'records/s':>10} {'kept':>9}")
    for r in rows:
        print(f"{r['records']:>10,} {r['seconds']:>8} {r['records_per_s']:>10,} {r['kept']:>9,}")
    at_100k = [r for r in rows if r["records"] == 100_000]
    if at_100k:
        verdict = "meets" if at_100k[0]["records_per_s"] >= TARGET else "MISSES"
        print(f"100k: {at_100k[0]['records_per_s']:,} records/s {verdict} the {TARGET:,}/s target")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "config": cfg.to_dict(),
                "benchmarks": {k: len(v) for k, v in bench.items()},
                "machine": machine(),
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
