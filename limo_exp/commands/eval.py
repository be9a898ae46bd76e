"""``limo-exp eval``: evaluate a model without training it (the N = 0 baseline every table needs).

``limo-exp eval model=qwen2_5_7b_instruct eval=limo_paper`` or, for a checkpoint,
``limo-exp eval model=outputs/runs/<run_key>/checkpoint``. Logged to MLflow like a run
(``limo.kind`` = eval; params: the model, eval and seed it depends on), with its own run key.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from limo_exp.commands import prepare
from limo_exp.commands.common import already_done, command, eval_options, parse, print_metrics
from limo_exp.identity import EVAL_ONLY_GROUPS
from limo_exp.tracking import run_log
from limo_exp.tracking.names import MODEL_TAG
from limo_exp.tracking.tracker import make_tracker


def run_eval(cfg: DictConfig) -> dict:
    """Evaluate the base model alone (the N = 0 baseline); the hub loads tagged are this run's own."""
    from limo_exp.data import hub

    with hub.recording():
        return _run_eval(cfg)


def _run_eval(cfg: DictConfig) -> dict:
    from limo_exp import training
    from limo_exp.data import hub
    from limo_exp.evaluation import registry
    from limo_exp.evaluation.evaluate import evaluate_to_dir

    spec = parse(cfg)
    c = spec.config
    prepare.check_eval(spec)  # tasks, files, per-task settings: before any model is fetched or converted
    benchmarks = registry.benchmarks_for(c.eval)
    key = spec.eval_key(registry.benchmarks_fingerprint(benchmarks))
    tracker = make_tracker(c.tracking)
    done = already_done(tracker, key, c.force)
    if done is not None:  # nothing to fetch
        return done
    base = training.resolve(c.model, c.paths.cache_dir)
    out_dir = Path(c.paths.output_root) / "evals" / key
    root = c.paths.output_root
    tags = {MODEL_TAG: c.model.name, "limo.base_model": run_log.relative(base, root)}
    tags |= hub.as_tags(hub.loaded())  # hub benchmarks: commit, rows
    with tracker.run(f"N=0 · baseline · s{c.seed}", run_log.run_tags(key, "eval", **tags)):
        tracker.log_params(run_log.run_params(spec.params(EVAL_ONLY_GROUPS)))
        run_log.log_environment(tracker, out_dir)  # environment.txt: every distribution
        sources = {b: registry.data_source(b, c.eval.data_dir) for b in benchmarks}
        run_log.log_benchmarks(tracker, benchmarks, sources, c.eval.limit)
        ev = evaluate_to_dir(base, c.eval, out_dir, **eval_options(c), revision=c.model.revision)
        run_log.log_evaluation(tracker, ev.metrics, ev.settings, ev.artifacts, root)
    print_metrics(ev.metrics, width=60)
    return {"run_key": key, "run_id": tracker.run_id, "skipped": False, "metrics": ev.metrics}


main = command(run_eval)
