"""``limo-exp run``: one configuration, top to bottom.

seed -> pool -> curate -> select -> model and tokenizer -> train -> save -> evaluate -> log.
Under ``accelerate launch`` every rank runs this; rank 0 tracks and evaluates.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from limo_exp import CONF_DIR, tracking
from limo_exp.eval_cmd import eval_options, evaluate_from_config, evaluate_isolated
from limo_exp.spec import run_key

log = logging.getLogger("limo_exp")


def train_config(cfg: DictConfig):
    from limo_exp.train import TrainConfig

    t = cfg.train
    return TrainConfig(
        lr=t.lr,
        epochs=t.epochs,
        max_steps=t.max_steps,
        batch_size=t.batch_size,
        grad_accum=t.grad_accum,
        warmup_ratio=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        max_length=t.max_length,
        packing=t.packing,
        gradient_checkpointing=t.gradient_checkpointing,
        instruction=t.instruction,
        system_prompt=t.system_prompt,
        seed=cfg.seed,
    )


def _sweep_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc.sweep.dir if hc.mode == RunMode.MULTIRUN else None


def _hydra_output_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None


def run(cfg: DictConfig) -> dict:
    """Run one configuration; returns its run key, MLflow run id and metrics."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from limo_exp import curation, evaluation, models, pools, selection
    from limo_exp.train import save, train

    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), mixed_precision="bf16" if torch.cuda.is_available() else "no"
    )
    main_rank = accelerator.is_main_process
    set_seed(cfg.seed)
    evaluation.check_tasks(list(cfg.eval.tasks))  # unknown task names fail before any work

    pool = pools.load_pool_from_config(OmegaConf.to_container(cfg.pool, resolve=True))
    fingerprint = pools.pool_fingerprint(pool)
    benchmarks = curation.benchmarks_for(list(cfg.eval.tasks), cfg.eval.get("data_dir"), cfg.eval)
    key = run_key(cfg, fingerprint, curation.benchmarks_fingerprint(benchmarks))
    run_dir = Path(cfg.paths.output_root) / "runs" / key
    tracker = tracking.make_tracker(cfg.tracking) if main_rank else tracking.NullTracker()
    done = tracker.find_finished(key)
    if accelerator.num_processes > 1:  # rank 0 decides for all, or the others would wait in training
        from accelerate.utils import broadcast_object_list

        done_id = broadcast_object_list([done.info.run_id if done is not None else None])[0]
        if done_id is not None and done is None and not cfg.force:
            return {"run_key": key, "run_id": done_id, "skipped": True, "metrics": {}}
    if done is not None and not cfg.force:
        log.info(
            "run_key %s already FINISHED as MLflow run %s; skipping (force=true reruns)",
            key,
            done.info.run_id,
        )
        return {
            "run_key": key,
            "run_id": done.info.run_id,
            "skipped": True,
            "metrics": dict(done.data.metrics),
        }

    name = f"{cfg.model.name}-{cfg.pool.name}-{cfg.quality.name}-n{cfg.data.n_samples}-s{cfg.seed}"
    tags = {tracking.RUN_KEY_TAG: key, "limo.pool_fingerprint": fingerprint, "limo.run_dir": str(run_dir)}
    tags["limo.hydra_output_dir"] = _hydra_output_dir() or "none"
    tags |= tracking.environment_tags()
    with tracker.run(name, tags, tracking.parent_run_id(_sweep_dir())):
        run_dir.mkdir(parents=True, exist_ok=True)
        tracker.log_params(tracking.flatten(OmegaConf.to_container(cfg, resolve=True)))
        if main_rank:  # files are written by rank 0 only
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            tracker.log_artifact(run_dir / "config.yaml")

        # curate (cached by fingerprint; parallel runs of a sweep curate once) and select
        started = time.perf_counter()
        curated = curation.curate_cached(
            pool, curation.config_from(cfg.curation), benchmarks, Path(cfg.paths.cache_dir) / "curated"
        )
        tracker.log_metrics({"cost/curation_seconds": time.perf_counter() - started})
        tracker.set_tags({"limo.curation_from_cache": str(curated.from_cache).lower()})
        if main_rank:
            cached = " (from cache)" if curated.from_cache else ""
            log.info("curation funnel%s:\n%s", cached, curation.format_funnel(curated.funnel))
        if main_rank:
            for f in curation.write_outputs(curated, run_dir / "curation"):
                tracker.log_artifact(f, "curation")
        tracker.log_metrics({f"curation/{s['stage']}_out": s["out"] for s in curated.funnel})
        examples = selection.select(
            curated.records,
            cfg.data.n_samples,
            cfg.quality.tier,
            cfg.seed,
            stratify_by=cfg.data.stratify_by,
            funnel=curated.funnel,
        )
        ids = [e.id for e in examples]
        if main_rank:
            (run_dir / "selected_ids.json").write_text(json.dumps(ids, indent=0))
            tracker.log_artifact(run_dir / "selected_ids.json")
        tracker.log_dataset(
            [{"id": r.id, "problem": r.problem} for r in pool], f"pool/{cfg.pool.name}", fingerprint, "pool"
        )
        tracker.log_dataset(
            [{"id": e.id, "problem": e.problem, "solution": e.solution} for e in examples],
            f"train/{cfg.pool.name}/{cfg.quality.name}/n{len(examples)}",
            pools.pool_fingerprint([r for r in curated.records if r.id in set(ids)]),
            "training",
        )

        # model, train, save
        with accelerator.main_process_first():
            base = models.resolve(cfg.model, cfg.paths.cache_dir)
        model, tok = models.load(
            base,
            dtype=cfg.model.dtype,
            attn=cfg.model.attn_implementation,
            trust_remote_code=cfg.model.trust_remote_code,
        )
        if cfg.train.lora:
            from limo_exp import lora

            model = lora.wrap(model, **cfg.train.lora)
            tracker.log_metrics({"train/trainable_fraction": lora.trainable_fraction(model)})
        tracker.set_tags(
            {"limo.base_model": base, "limo.attn_implementation": model.config._attn_implementation}
        )
        n_params = sum(p.numel() for p in model.parameters())  # before sharding (ZeRO-3 / FSDP)
        result = train(model, tok, examples, train_config(cfg), accelerator, tracker.log_metrics)
        metrics = {
            "train/tokens_per_s": result.tokens_per_s,
            "train/target_tokens": result.target_tokens,
            "train/seen_tokens": result.seen_tokens,
            "train/seconds": result.seconds,
            "train/final_loss": result.losses[-1] if result.losses else float("nan"),
            "train/steps": result.steps,
            "train/n_examples": len(examples),
            # cost figures: device-hours over all processes, and the usual 6 * params * tokens estimate
            "cost/train_tokens": result.seen_tokens,
            "cost/device_hours": result.seconds * accelerator.num_processes / 3600,
            "cost/train_flops_est": 6.0 * n_params * result.seen_tokens,
        }
        tracker.log_metrics(metrics)
        ckpt = run_dir / "checkpoint"
        save(result.model, tok, str(ckpt), accelerator)
        del model, result.model
        distributed = accelerator.num_processes > 1
        if distributed:  # evaluation is rank 0's alone: no rank waits at a barrier meanwhile
            import torch.distributed as dist

            dist.destroy_process_group()
            if not main_rank:
                return {"run_key": key, "run_id": None, "skipped": False, "metrics": metrics}

        # evaluate (rank 0) and log
        if main_rank:
            evaluate = evaluate_isolated if distributed else evaluate_from_config
            ev = evaluate(str(ckpt), cfg.eval, run_dir / "eval", **eval_options(cfg))
            metrics |= ev.metrics
            tracker.log_metrics(ev.metrics)
            tracker.set_tags({f"eval.{k}": v for k, v in ev.settings.items()})
            for path in ev.artifacts:
                tracker.log_artifact(path, "eval")
        if not cfg.train.save:
            import shutil

            shutil.rmtree(ckpt, ignore_errors=True)
        return {
            "run_key": key,
            "run_id": tracker.run_id,
            "skipped": False,
            "metrics": metrics,
            "selected_ids": ids,
            "run_dir": str(run_dir),
        }


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        out = run(cfg)
    except BaseException:
        tracking.fail_parent(cfg.tracking, _sweep_dir())
        raise
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    state = "skipped (already FINISHED)" if out["skipped"] else "finished"
    print(f"\nrun {out['run_id']} {state}; run_key {out['run_key']}")
    if out.get("run_dir"):
        print(f"  outputs in {out['run_dir']}")
    for k, v in sorted(out["metrics"].items()):
        if k.startswith("eval/") or k in ("train/final_loss", "train/tokens_per_s"):
            print(f"  {k:50s} {v:.4f}")
    acc = [v for k, v in out["metrics"].items() if k.startswith("eval/") and k.endswith("/exact_match")]
    return acc[0] if acc else None


def main() -> None:
    _hydra_main()
