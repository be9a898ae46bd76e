"""What a tracked run logs beyond params: identity and environment tags, the curation funnel,
the datasets, training cost and evaluation results. Plain data in, tracker calls out; every
function is a no-op on a ``NullTracker``.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from limo_exp.data.fingerprints import pool_fingerprint
from limo_exp.data.records import Example, Record
from limo_exp.tracking.names import KIND_TAG, KINDS, RUN_KEY_TAG
from limo_exp.tracking.tracker import NullTracker


def git_info(path: Path | None = None) -> dict[str, str]:
    cwd = path or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, check=True
        )
        return {"git.commit": commit.stdout.strip(), "git.dirty": str(bool(dirty.stdout.strip())).lower()}
    except (OSError, subprocess.CalledProcessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}


def environment_tags() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    tags = {"hardware.platform": platform.platform(), "hardware.cpus": str(os.cpu_count())}
    for pkg in ("torch", "transformers", "accelerate", "lm-eval", "math-verify", "mlflow", "limo-exp"):
        try:
            tags[f"version.{pkg}"] = version(pkg)
        except PackageNotFoundError:
            tags[f"version.{pkg}"] = "absent"
    try:
        import torch

        if torch.cuda.is_available():
            tags["hardware.gpus"] = ", ".join(
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            )
        else:
            tags["hardware.gpus"] = "none"
    except ImportError:
        pass
    return tags | git_info()


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
        tracker.set_tags({f"limo.child.{key}": run_id}, run_id=parent)


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


def log_datasets(
    tracker: NullTracker,
    pool: list[Record],
    pool_name: str,
    pool_digest: str,
    examples: list[Example],
    curated: list[Record],
    train_name: str,
    origin: dict | None = None,
) -> None:
    """``mlflow.log_input`` of the pool and of the training subset (digest of its curated
    records), both with the pool's source (``origin``)."""
    tracker.log_dataset(
        [{"id": r.id, "problem": r.problem} for r in pool], f"pool/{pool_name}", pool_digest, "pool", origin
    )
    ids = {e.id for e in examples}
    tracker.log_dataset(
        [{"id": e.id, "problem": e.problem, "solution": e.solution} for e in examples],
        train_name,
        pool_fingerprint([r for r in curated if r.id in ids]),
        "training",
        origin,
    )


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


# dense bf16 peak FLOP/s per device, from the vendors' data sheets (SXM parts)
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}


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
    device (a CPU, or a GPU missing from PEAK_BF16_FLOPS). Attention FLOPs are not counted."""
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device), None)
    if peak is None or not seconds:
        return None
    return 6.0 * n_params * real_tokens / seconds / (peak * n_processes)


def log_evaluation(
    tracker: NullTracker, metrics: dict[str, float], settings: dict[str, str], files: list[Path]
) -> None:
    tracker.log_metrics(metrics)
    tracker.set_tags({f"eval.{k}": v for k, v in settings.items()})
    for path in files:
        tracker.log_artifact(path, "eval")
