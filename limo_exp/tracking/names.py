"""The catalogue of names a run is logged under, shared by the code that writes runs and the code
that reads them back: tags, metric names (MLflow-safe), and the map from names older stores used.

    accuracy("limo_math500")                      # "math500/accuracy": the benchmark's headline
    metric_name("limo_math500", "no_answer,none")  # "eval/limo_math500/no_answer"
    current_metric("eval/limo_math500/exact_match")  # an older store's name -> "math500/accuracy"

No MLflow import here, so any stage can name a metric without pulling in the client.
"""

from __future__ import annotations

import re

RUN_KEY_TAG = "limo.run_key"
KIND_TAG = "limo.kind"
# what a tracked run is: a configuration trained and evaluated (limo-exp run), a model evaluated
# without training (limo-exp eval: the N = 0 baseline), or the parent of a sweep's runs
KINDS = ("run", "eval", "sweep", "distill")  # distill: a teacher wrote a pool's solutions
LEGACY_KINDS = {"eval_only": "eval"}  # stores written before the kind tag was renamed

MODEL_TAG = "limo.model"  # the base model's config name: the run's name leads with what varies
CHILD_TAG = "limo.child."  # + run key -> run id: a sweep parent's children, reused ones included
SWEPT_TAG = "limo.swept."  # + axis -> its values: what a sweep varies
BEST_RUN_TAG = "limo.best_run"  # a sweep parent: the child with the best headline accuracy
SWEPT_FILE = ".limo_swept_axes.json"  # in a sweep folder: the axes, for its jobs to name their runs
SWEEP_SUMMARY = "sweep_summary.json"  # a sweep parent's table of children (MLflow's log_table)
TRAINING_ROWS = "training_rows.json"  # a run's table of the texts it trained on

# MLflow 3's UI opens an experiment on the view this experiment tag names; without it, on the GenAI
# trace overview. custom_model_development: the runs table and charts of training runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# A saved view of the runs table, opened by <ui>/#/experiments/<id>/runs?viewStateShareKey=limo: the
# headline accuracies and the ablation axes as columns (the UI shows no metric column by default)
VIEW = "limo"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW}"
VIEW_PARAMS = ("quality.name", "data.n_samples", "seed")

_BAD = re.compile(r"[^0-9A-Za-z_\-./ ]")


def safe_metric(name: str) -> str:
    """MLflow rejects ``,`` ``:`` ``@`` (among others): ``exact_match,flexible`` -> ``exact_match/flexible``."""
    name = name.replace(",", "/").replace("@", "_at_").replace(":", "_")
    return _BAD.sub("_", name)


# ---- metrics -------------------------------------------------------------------------------------
# A benchmark's headline is ``<benchmark>/accuracy``: mean@n, the share of correct samples averaged
# over questions (lm-eval's ``exact_match`` of the limo_ tasks; pass@1 and greedy accuracy at n = 1),
# with its standard error over questions. Everything else lives under ``eval/<task>/<metric>``.
# Stores written before the headline existed hold it as ``eval/<task>/exact_match``: read through
# ``current_metric``.

TASK_PREFIX = "limo_"
ACCURACY = "accuracy"
# sampling metrics that are the headline under another name: never logged (four copies of one number)
SAME_AS_ACCURACY = ("mean_at_n", "mean_at_n_stderr", "pass_at_1", "pass_at_1_stderr")
# and at one sample per question, maj@1 is too
SAME_AS_ACCURACY_AT_ONE = ("maj_at_1", "maj_at_1_stderr")


def benchmark(task: str) -> str:
    """A task's benchmark name, as metric names show it: ``limo_math500`` -> ``math500``."""
    return task.removeprefix(TASK_PREFIX)


def accuracy(task: str) -> str:
    return safe_metric(f"{benchmark(task)}/{ACCURACY}")


def accuracy_stderr(task: str) -> str:
    return safe_metric(f"{benchmark(task)}/{ACCURACY}_stderr")


def regrade_accuracy(task: str) -> str:
    """The headline after ``limo-exp regrade`` re-scored a run's stored samples."""
    return safe_metric(f"regrade/{benchmark(task)}/{ACCURACY}")


def task_of(headline: str) -> str:
    """The task a headline metric names: ``math500/accuracy`` -> ``limo_math500``."""
    return TASK_PREFIX + headline.split("/")[0]


def eval_metric(task: str, metric: str) -> str:
    return safe_metric(f"eval/{task}/{metric}")


def metric_name(task: str, lm_eval_key: str) -> str:
    """An lm-eval result key of ``task`` -> its MLflow name: ``exact_match,none`` -> the headline
    ``<benchmark>/accuracy`` (its stderr ``<benchmark>/accuracy_stderr``); any other metric
    ``eval/<task>/<metric>``, a filter other than ``none`` as a suffix (``.../exact_match/flexible``)."""
    metric, _, filt = lm_eval_key.partition(",")
    if filt in ("", "none"):
        if metric == "exact_match":
            return accuracy(task)
        if metric == "exact_match_stderr":
            return accuracy_stderr(task)
        return eval_metric(task, metric)
    return eval_metric(task, f"{metric}/{filt}")


def sampling_metric(task: str, name: str, n: int) -> str | None:
    """A ``metrics.sampling_metrics`` figure of ``task`` at ``n`` samples per question -> its name,
    or None when it is the headline again (mean@n, pass@1; maj@1 at n = 1)."""
    if name in SAME_AS_ACCURACY or (n == 1 and name in SAME_AS_ACCURACY_AT_ONE):
        return None
    return eval_metric(task, name)


def is_accuracy(name: str) -> bool:
    """A headline metric (``<benchmark>/accuracy``), in a current or an older store's name."""
    current = current_metric(name)
    return current.count("/") == 1 and current.endswith(f"/{ACCURACY}")


# Counts beside the shares (``evaluation.metrics.answer_counts``): ``n_samples``, ``n_no_answer``
# (truncated ones included, as in the share ``no_answer``), ``n_truncated``, ``n_timeout``. Stores
# written before 2026-12-07 hold ``no_answer_count`` (no box only: truncated responses not counted)
# and ``timeout_count`` instead; neither is mapped (the first counted something else).
COUNTS = ("n_samples", "n_no_answer", "n_truncated", "n_timeout")

_LEGACY = re.compile(r"^(?P<root>eval|regrade)/(?P<task>[^/]+)/exact_match(?P<stderr>_stderr)?$")


def current_metric(name: str) -> str:
    """A metric name as this version logs it; names older stores used are mapped
    (``eval/<task>/exact_match`` -> ``<benchmark>/accuracy``, ``regrade/<task>/exact_match`` ->
    ``regrade/<benchmark>/accuracy``), the others returned as they are."""
    m = _LEGACY.match(name)
    if m is None:
        return name
    if m["root"] == "regrade":
        return regrade_accuracy(m["task"]) if not m["stderr"] else name
    return accuracy_stderr(m["task"]) if m["stderr"] else accuracy(m["task"])


def current_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """A run's metrics under current names (a name logged both ways keeps the current one)."""
    return {
        current_metric(k): v
        for k, v in metrics.items()
        if current_metric(k) == k or current_metric(k) not in metrics
    }


def accuracies(metrics: dict[str, float]) -> dict[str, float]:
    """The headline metrics among a run's metrics (any store's names), by current name."""
    return {k: v for k, v in current_metrics(metrics).items() if is_accuracy(k)}


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^/@\s:]*)(?::[^/@\s]*)?@")
# a key whose last word names a secret: token, hf_token, password, client_secret, api_key, ...
SECRET_KEY = re.compile(r"(^|[_\-])(token|password|passwd|secret|api_?key|credentials?)$", re.IGNORECASE)


def mask(value: str, key: str = "") -> str:
    """What may be logged of a value: nothing under a key named like a secret, and no
    user info in a URI (``http://user:pw@host`` -> ``http://***@host``)."""
    if key and SECRET_KEY.search(key.rsplit(".", 1)[-1]):
        return "***" if value else value
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", value)


def mask_tree(d, key: str = ""):
    """``mask`` over a nested config (dicts and lists), e.g. before it is written as an artifact."""
    if isinstance(d, dict):
        return {k: mask_tree(v, str(k)) for k, v in d.items()}
    if isinstance(d, list):
        return [mask_tree(v, key) for v in d]
    return mask(d, key) if isinstance(d, str) else d
