"""``limo-exp regrade <run id | run key | folder> [overrides]``: re-score a run's stored responses
with the current grader, without loading a model (grader version logged).

    limo-exp regrade outputs/runs/<run_key>/eval
    limo-exp regrade 3f8e9c7d4d7a4102a5a03f5c7b79fad6 experiment=demo     # downloads, regrades, logs

For an MLflow run the regraded accuracy is logged on that run as ``regrade/<benchmark>/accuracy``
with the tag ``regrade.grader_version``, and the regraded samples as artifacts under regrade/.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from omegaconf import DictConfig

from limo_exp.commands.common import command, parse
from limo_exp.tracking.names import regrade_accuracy


def run_regrade(cfg: DictConfig) -> dict:
    from limo_exp.evaluation.regrade import regrade_dir
    from limo_exp.tracking.runs import open_store

    c = parse(cfg).config
    target = c.report.a
    if not target:
        raise SystemExit(
            "usage: limo-exp regrade <run id | run key | folder with samples_*.jsonl> [overrides]"
        )
    store = None
    if Path(target).is_dir():
        folder = Path(target)
    elif re.fullmatch(r"[0-9a-f]{20}|[0-9a-f]{32}", target):
        store = open_store(c.tracking)
        runs = store.search(f"tags.`limo.run_key` = '{target}'") if len(target) == 20 else [store.get(target)]
        if not runs:
            raise SystemExit(f"no run with key {target} in study {c.tracking.experiment!r}")
        run_id = runs[0].run_id
        folder = Path(c.paths.cache_dir) / "regrade" / run_id
        store.download(run_id, "eval", folder)
    else:
        raise SystemExit(f"{target!r} is neither a folder nor a run id / run key")
    try:
        summary = regrade_dir(folder)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"regrade: {e}") from None
    for task, s in summary["tasks"].items():
        print(
            f"{task}: {s['samples']} samples, accuracy {s['accuracy_before']:.3f} -> {s['accuracy_after']:.3f}, "
            f"{len(s['changed'])} verdict(s) changed"
        )
    print(f"grader {summary['grader_version']}, {summary['seconds']:.1f} s; written to {folder / 'regraded'}")
    if store is not None:
        store.run_id = run_id
        store.log_metrics({regrade_accuracy(t): s["accuracy_after"] for t, s in summary["tasks"].items()})
        store.set_tags({"regrade.grader_version": summary["grader_version"]})
        store.log_artifact(folder / "regraded", "regrade")
    return summary


def main() -> None:
    # limo-exp regrade TARGET [overrides]: the target travels as report.a (a free-form value)
    from limo_exp.typed import hydra_quote

    args = sys.argv[1:]
    if args and "=" not in args[0]:
        sys.argv = [sys.argv[0], f"report.a={hydra_quote(args[0])}", *args[1:]]
    command(run_regrade)()
