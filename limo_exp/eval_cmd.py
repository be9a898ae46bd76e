"""``limo-exp eval``: evaluate a model without training it (the baseline row every table needs).

``limo-exp eval model=qwen2_5_7b_instruct eval=limo_paper`` or, for a checkpoint,
``limo-exp eval model=local_path model.path=outputs/runs/<key>/checkpoint``. Logged to MLflow
like a run (params, settings tags, metrics, per-sample outputs), with its own run key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from limo_exp import CONF_DIR, tracking
from limo_exp.spec import run_key

log = logging.getLogger("limo_exp")


@dataclass
class EvalOutput:
    metrics: dict[str, float]
    settings: dict[str, str]
    artifacts: list[Path] = field(default_factory=list)


def evaluate_from_config(
    model_path: str,
    eval_cfg,
    output_dir: Path,
    *,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    seed: int = 0,
) -> EvalOutput:
    """Run the eval suite of ``eval_cfg`` on ``model_path``; write results and per-sample outputs."""
    import torch

    from limo_exp.evaluation import evaluate_from_cfg
    from limo_exp.models import torch_dtype

    e = OmegaConf.to_container(eval_cfg, resolve=True) if isinstance(eval_cfg, DictConfig) else dict(eval_cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = str(torch_dtype(dtype)).removeprefix("torch.")  # "auto": bf16 on GPU, fp32 on CPU, as in training
    res = evaluate_from_cfg(
        model_path, e, device=device, dtype=dtype, trust_remote_code=trust_remote_code, seed=seed
    )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    arts = [output_dir / "results.json"]
    arts[0].write_text(json.dumps(res.raw, indent=2, default=str))
    (output_dir / "settings.json").write_text(json.dumps(res.settings, indent=2))
    arts.append(output_dir / "settings.json")
    for task, rows in res.samples.items():
        p = output_dir / f"samples_{task}.jsonl"
        with p.open("w") as f:
            for row in rows:
                f.write(json.dumps(row, default=str) + "\n")
        arts.append(p)
    return EvalOutput(res.metrics, {k: str(v) for k, v in res.settings.items()}, arts)


_DIST_ENV = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "ACCELERATE_USE_DEEPSPEED",
    "ACCELERATE_USE_FSDP",
)


def eval_options(cfg: DictConfig) -> dict:
    """What evaluation takes from the rest of the config: the model's dtype and remote-code switch, the seed."""
    return {
        "dtype": cfg.model.dtype,
        "trust_remote_code": bool(cfg.model.trust_remote_code),
        "seed": int(cfg.seed),
    }


def evaluate_isolated(model_path: str, eval_cfg, output_dir: Path, **options) -> EvalOutput:
    """``evaluate_from_config`` in a fresh process without the launcher's distributed environment.

    After multi-process training, rank 0 evaluates alone; a process that still carries the
    training's process group and Accelerate state would make lm-eval (or vLLM's own workers)
    believe it is one rank of many.
    """
    import os
    import subprocess
    import sys

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    e = OmegaConf.to_container(eval_cfg, resolve=True) if isinstance(eval_cfg, DictConfig) else dict(eval_cfg)
    request = output_dir / "request.json"
    request.write_text(json.dumps({"model_path": model_path, "eval": e, "options": options}))
    env = {k: v for k, v in os.environ.items() if k not in _DIST_ENV}
    subprocess.run([sys.executable, "-m", "limo_exp.eval_cmd", str(request)], env=env, check=True)
    out = json.loads((output_dir / "output.json").read_text())
    return EvalOutput(out["metrics"], out["settings"], [Path(p) for p in out["artifacts"]])


def _worker(request: Path) -> None:
    req = json.loads(request.read_text())
    ev = evaluate_from_config(req["model_path"], req["eval"], request.parent, **req["options"])
    out = {"metrics": ev.metrics, "settings": ev.settings, "artifacts": [str(p) for p in ev.artifacts]}
    (request.parent / "output.json").write_text(json.dumps(out))


def run_eval(cfg: DictConfig) -> dict:
    from limo_exp import evaluation, models
    from limo_exp.curation import benchmarks_fingerprint, benchmarks_for

    evaluation.check_tasks(list(cfg.eval.tasks))
    base = models.resolve(cfg.model, cfg.paths.cache_dir)
    benchmarks = benchmarks_for(list(cfg.eval.tasks), cfg.eval.get("data_dir"), cfg.eval)
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))  # eval.instruction -> train.*
    semantic = OmegaConf.masked_copy(resolved, ["model", "eval", "seed"])
    key = run_key(semantic, "eval-only", benchmarks_fingerprint(benchmarks))
    tracker = tracking.make_tracker(cfg.tracking)
    done = tracker.find_finished(key)
    if done is not None and not cfg.force:
        log.info(
            "eval run_key %s already FINISHED as %s; skipping (force=true reruns)", key, done.info.run_id
        )
        return {
            "run_key": key,
            "run_id": done.info.run_id,
            "skipped": True,
            "metrics": dict(done.data.metrics),
        }
    out_dir = Path(cfg.paths.output_root) / "evals" / key
    tags = {tracking.RUN_KEY_TAG: key, "limo.kind": "eval_only", "limo.base_model": base}
    with tracker.run(f"eval-{cfg.model.name}", tags | tracking.environment_tags()):
        tracker.log_params(
            tracking.flatten(OmegaConf.to_container(cfg, resolve=True))
            | {"data.n_samples": "0", "quality.name": "base", "pool.name": "none"}
        )
        ev = evaluate_from_config(base, cfg.eval, out_dir, **eval_options(cfg))
        tracker.log_metrics(ev.metrics)
        tracker.set_tags({f"eval.{k}": v for k, v in ev.settings.items()})
        for p in ev.artifacts:
            tracker.log_artifact(p, "eval")
    for k, v in sorted(ev.metrics.items()):
        print(f"{k:60s} {v:.4f}")
    return {"run_key": key, "run_id": tracker.run_id, "skipped": False, "metrics": ev.metrics}


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    run_eval(cfg)


def main() -> None:
    _hydra_main()


if __name__ == "__main__":  # the worker of evaluate_isolated
    import sys

    _worker(Path(sys.argv[1]))
