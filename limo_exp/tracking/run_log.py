"""What a tracked run logs: its name and params (what varies first), identity and environment
tags, the curation funnel, the datasets (pool, the texts trained on, the benchmarks), training cost
and evaluation results (the headline first). Plain data in, tracker calls out; every function is a
no-op on a ``NullTracker``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from limo_exp.data.fingerprints import items_digest
from limo_exp.data.records import BenchItem, Example, Record
from limo_exp.tracking.environment import (  # noqa: F401  (importable here, as before)
    environment_tags,
    git_info,
    log_environment,
)
from limo_exp.tracking.names import (
    CHILD_TAG,
    KIND_TAG,
    KINDS,
    RUN_KEY_TAG,
    TRAINING_ROWS,
    VIEW_PARAMS,
    accuracies,
)
from limo_exp.tracking.tracker import NullTracker

# the ablation axes (shared/DESIGN.md), logged first so that a run page's params open on them
AXES = ("quality", "data.n_samples", "seed", "selection.strategy", "model.name", "pool.name")
AXES += ("train.name", "eval.name")
# config groups of other commands (report, distill, plan) or of composition only: not a run's params
NOT_RUN_PARAMS = ("report", "distill", "plan", "debug", "experiment", "hydra")


def run_name(quality: str, strategy: str, n: int, seed: int, axes: dict[str, str] | None = None) -> str:
    """What varies, N first (the study's axis, and short: MLflow's name column shows ~16
    characters), the seed last: ``N=8 · short · s0``. In a sweep, the values of its other swept
    axes (``axes``: a group by its value, a leaf as ``lr=1e-5``, by as much of its key as tells it
    from the other axes: ``gsm8k.weight=1 · aime.weight=0``); outside one, the solution tier and a
    selection strategy other than random. The model is a tag and the parent's name."""
    if axes:
        parts = [v if "." not in k else f"{_tail(k, list(axes))}={v}" for k, v in axes.items()]
        parts = [p for k, p in zip(axes, parts) if k not in ("data.n_samples", "seed")]
    else:
        parts = [quality] + ([strategy] if strategy != "random" else [])
    return " · ".join([f"N={n}", *parts, f"s{seed}"])


def _tail(key: str, keys: list[str]) -> str:
    """The shortest end of a dotted key that no other key ends with (``data.answers_per_question``
    -> ``answers_per_question``; ``pool.members.gsm8k.weight`` beside aime's -> ``gsm8k.weight``)."""
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        tail = ".".join(parts[i:])
        if not any(k != key and (k == tail or k.endswith("." + tail)) for k in keys):
            return tail
    return key


def run_params(params: dict[str, str], first: tuple[str, ...] = ()) -> dict[str, str]:
    """A run's flattened config as params, in the order a reader wants them: the swept axes
    (``first``: keys or group prefixes), then ``AXES``, then the rest as composed; other commands'
    settings (``NOT_RUN_PARAMS``) left out."""
    kept = {k: v for k, v in params.items() if k.split(".")[0] not in NOT_RUN_PARAMS}

    def rank(k: str) -> int:
        for i, a in enumerate((*first, *AXES)):
            if k == a or k.startswith(f"{a}."):
                return i
        return len(first) + len(AXES)

    return dict(sorted(kept.items(), key=lambda kv: rank(kv[0])))  # stable: the rest as composed


def relative(path: str | Path, root: str | Path) -> str:
    """A path as logged: relative to the output root when under it (no user's home in a store)."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


def run_tags(key: str, kind: str, **extra: str) -> dict[str, str]:
    """The tags every run starts with: its key, its kind (run | eval | sweep), the environment."""
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}; valid: {KINDS}")
    env = environment_tags()
    standard = {  # MLflow's own: the UI shows the source, the user and the commit
        "mlflow.source.name": f"limo-exp {kind}",
        "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": env["git.commit"],
        "mlflow.user": _user(),
    }
    return {RUN_KEY_TAG: key, KIND_TAG: kind, **extra} | env | standard


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def link_child(tracker: NullTracker, parent: str | None, key: str, run_id: str | None) -> None:
    """A sweep's parent lists every configuration of the sweep as a tag ``limo.child.<run key>``:
    the ones it ran and the ones it found FINISHED by an earlier launch and reused."""
    if parent and run_id:
        tracker.set_tags({f"{CHILD_TAG}{key}": run_id}, run_id=parent)


def log_curation(
    tracker: NullTracker, funnel: list[dict[str, Any]], from_cache: bool, seconds: float, files: list[Path]
) -> None:
    tracker.log_metrics({"cost/curation_seconds": seconds})
    tracker.set_tags({"limo.curation_from_cache": str(from_cache).lower()})
    for f in files:
        tracker.log_artifact(f, "curation")
    tracker.log_metrics({f"curation/{s['stage']}_out": s["out"] for s in funnel})
    if funnel:  # what curation read and what it kept: the pool a selection of N is drawn from
        tracker.log_metrics(
            {"curation/records_scanned": funnel[0]["in"], "curation/pool_size": funnel[-1]["out"]}
        )


def log_teacher_cost(tracker: NullTracker, pool: list[Record]) -> None:
    """A pool written by a teacher (limo-exp distill) carries its generation cost per record:
    logged as the cost of the run trained on it (``cost/teacher_tokens``, ``cost/teacher_seconds``)
    with the teacher(s) as the tag ``limo.teacher``."""
    written = [r.meta for r in pool if "teacher_tokens" in r.meta]
    if not written:
        return
    tracker.log_metrics(
        {
            "cost/teacher_tokens": float(sum(m["teacher_tokens"] for m in written)),
            "cost/teacher_seconds": float(sum(m.get("teacher_seconds") or 0 for m in written)),
        }
    )
    tracker.set_tags({"limo.teacher": ",".join(sorted({str(m.get("teacher")) for m in written}))})


def training_digest(examples: list[Example]) -> str:
    """sha256 of the exact texts trained on (id, problem, the tier's solution), in id order: two
    tiers of one selection (answer-only, short CoT) give two digests."""
    rows = sorted([e.id, e.problem, e.tier, e.solution] for e in examples)
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def log_datasets(
    tracker: NullTracker,
    pool: list[Record],
    pool_name: str,
    pool_digest: str,
    examples: list[Example],
    train_name: str,
    origin: dict | None = None,
) -> None:
    """``mlflow.log_input`` of the pool (context ``pool``) and of the training subset (``training``:
    digest of the texts trained on), both with the pool's source (``origin``); the training rows
    (id, problem, solution kind, text) as the table artifact ``training_rows.json``."""
    tracker.log_dataset(
        [{"id": r.id, "problem": r.problem} for r in pool], f"pool/{pool_name}", pool_digest, "pool", origin
    )
    rows = [{"id": e.id, "problem": e.problem, "solution_kind": e.tier, "text": e.solution} for e in examples]
    tracker.log_dataset(rows, train_name, training_digest(examples), "training", origin)
    tracker.log_table(rows, TRAINING_ROWS)


def log_benchmarks(
    tracker: NullTracker, benchmarks: dict[str, list[BenchItem]], sources: dict[str, str], limit: int | None
) -> None:
    """Each benchmark evaluated as an ``evaluation`` dataset ``eval/<benchmark>`` (the first
    ``limit`` items when the suite has a limit; ``sources``: benchmark -> where it was read)."""
    for bench, items in sorted(benchmarks.items()):
        items = items[:limit] if limit else items
        rows = [{"id": i.id, "problem": i.problem, "answer": i.answer} for i in items]
        origin = {"kind": "benchmark", "benchmark": bench, "source": sources.get(bench, "unknown")}
        tracker.log_dataset(rows, f"eval/{bench}", items_digest(items), "evaluation", origin)


def log_training(
    tracker: NullTracker, result: Any, n_examples: int, n_params: int, n_processes: int
) -> dict[str, float]:
    """Training figures and cost (device-hours over all processes, FLOPs as 6 * params * tokens),
    the loss implementation and the state a resumed attempt started from; returns the metrics."""
    tracker.set_tags(
        {
            "limo.loss_impl": result.loss_impl,
            "limo.resumed_from_state": result.resumed_from or "none",
            "limo.attn_implementation": result.attn_implementation or "unknown",
            "limo.attn_reason": result.attn_reason or "unknown",
            "limo.liger_layers": str(bool(result.liger_layers)).lower(),
        }
    )
    metrics = {
        "train/tokens_per_s": result.tokens_per_s,
        "train/target_tokens": result.target_tokens,
        "train/seen_tokens": result.seen_tokens,
        "train/real_token_ratio": result.real_tokens / result.seen_tokens
        if result.seen_tokens
        else float("nan"),
        "train/seconds": result.seconds,
        "train/final_loss": result.losses[-1] if result.losses else float("nan"),
        "train/steps": result.steps,
        "train/n_examples": n_examples,
        "train/n_sequences": result.sequences,  # what the global batch counts (2 per example: multitask)
        "cost/train_tokens": result.seen_tokens,
        "cost/device_hours": result.seconds * n_processes / 3600,
        "cost/train_flops_est": 6.0 * n_params * result.seen_tokens,
    }
    mfu = model_flops_utilisation(n_params, result.real_tokens, result.seconds, n_processes, device_name())
    if mfu is not None:
        metrics["train/mfu"] = mfu
    tracker.log_metrics(metrics)
    return metrics


def device_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def model_flops_utilisation(
    n_params: int, real_tokens: int, seconds: float, n_processes: int, device: str
) -> float | None:
    """6 x params x example tokens per second over the devices' bf16 peak; None for an unknown
    device (a CPU, or a GPU missing from hardware.GPUS). Attention FLOPs are not counted."""
    from limo_exp.hardware import gpu

    spec = gpu(device)
    if spec is None or not seconds:
        return None
    return 6.0 * n_params * real_tokens / seconds / (spec.bf16_flops * n_processes)


PATH_SETTINGS = ("model_path", "response_store", "data_dir")  # logged relative to the output root


def log_evaluation(
    tracker: NullTracker,
    metrics: dict[str, float],
    settings: dict[str, str],
    files: list[Path],
    root: str | Path | None = None,
) -> None:
    """The headline accuracies first, then the other metrics; the settings as ``eval.*`` tags (none
    empty; paths relative to ``root``, the output root); the files under ``eval/``."""
    head = accuracies(metrics)
    tracker.log_metrics(head)
    tracker.add_to_view(sorted(head), list(VIEW_PARAMS))  # the runs table's "limo" view shows them
    tracker.log_metrics({k: v for k, v in metrics.items() if k not in head})
    tags = {k: relative(v, root) if root and k in PATH_SETTINGS else v for k, v in settings.items()}
    tracker.set_tags({f"eval.{k}": v for k, v in tags.items() if str(v).strip()})
    for path in files:
        tracker.log_artifact(path, "eval")
