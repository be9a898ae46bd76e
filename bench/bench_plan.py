"""How long does `limo-exp plan --multirun sweep=<name>` take? Goal: under 15 s a sweep (issue 34).

    python bench/bench_plan.py [--sweeps less_is_more mixtures ...] [--rounds 3]

Each round, for each sweep in turn: the command as a user types it (``limo-exp plan --multirun
sweep=<name>``, a new process: Python, imports, Hydra, the plan, plan.md written), wall seconds;
then the plan alone in this process (``commands.plan.make_plan``: composing every point, pricing
its tokens, memory and hours, the power of its comparisons; nothing loads a model or writes a run),
wall and CPU seconds, after one warm-up. The target is read against the command's wall time; the
load average is beside it (this machine is shared).
Writes results/bench/plan.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ["less_is_more", "mixtures", "answers_per_question", "structure", "trace_length"]
TARGET_S = 15.0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweeps", nargs="+", default=SWEEPS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "results/bench/plan.json")
    args = ap.parse_args(argv)
    os.chdir(ROOT)  # the sweeps' relative paths (pools, outputs) as `limo-exp plan` resolves them here
    from limo_exp.commands import plan as plan_cmd

    with tempfile.TemporaryDirectory() as tmp:
        paths = [f"paths.output_root={tmp}/out", f"paths.cache_dir={tmp}/cache"]
        plan_cmd.make_plan([f"sweep={args.sweeps[0]}", *paths])  # warm-up
        seen = {s: {"command_wall_s": [], "wall_s": [], "cpu_s": []} for s in args.sweeps}
        points = {}
        cli = [str(Path(sys.executable).parent / "limo-exp"), "plan", "--multirun"]
        for r in range(args.rounds):
            for sweep in args.sweeps:
                wall = time.perf_counter()
                subprocess.run(
                    [*cli, f"sweep={sweep}", *paths, f"hydra.sweep.dir={tmp}/sweeps/{sweep}/{r}"],
                    check=True,
                    capture_output=True,
                )
                seen[sweep]["command_wall_s"].append(time.perf_counter() - wall)
                wall, cpu = time.perf_counter(), time.process_time()
                plan, _ = plan_cmd.make_plan([f"sweep={sweep}", *paths])
                seen[sweep]["cpu_s"].append(time.process_time() - cpu)
                seen[sweep]["wall_s"].append(time.perf_counter() - wall)
                points[sweep] = len(plan.points)
    result = {
        "what": "limo-exp plan --multirun sweep=<name> as a command, and its plan alone in one process "
        "after a warm-up; medians of the rounds",
        "target_s": TARGET_S,
        "load_average_1m": os.getloadavg()[0],
        "rounds": args.rounds,
        "sweeps": {
            s: {
                "points": points[s],
                "command_wall_s": round(statistics.median(v["command_wall_s"]), 2),
                "plan_wall_s": round(statistics.median(v["wall_s"]), 2),
                "plan_cpu_s": round(statistics.median(v["cpu_s"]), 2),
                "command_wall_s_each": [round(x, 2) for x in v["command_wall_s"]],
                "under_target": statistics.median(v["command_wall_s"]) < TARGET_S,
            }
            for s, v in seen.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
