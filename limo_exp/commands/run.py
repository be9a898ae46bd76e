"""``limo-exp run``: one configuration, top to bottom.

seed -> pool -> curate -> select -> model and tokenizer -> train -> save -> evaluate -> log.
Under ``accelerate launch`` every rank runs this; rank 0 tracks, writes files and evaluates.
A relaunch of a killed run continues from its last saved training state.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from limo_exp import stopping
from limo_exp.commands import plan_points, prepare
from limo_exp.commands.common import (
    already_done,
    command,
    eval_options,
    fail_sweep,
    hydra_output_dir,
    job_overrides,
    log,
    parse,
    print_metrics,
    run_lock,
    stop_on_signals,
    sweep_dir,
)
from limo_exp.tracking import run_log, sweep_log
from limo_exp.tracking.names import MODEL_TAG, accuracies, mask_tree
from limo_exp.tracking.tracker import NullTracker, make_tracker, parent_run_id

RUN_ID_FILE = "run_id"  # in the run's Hydra folder: its MLflow run id (hydra_plugins/limo_exp_launcher)


def run(cfg: DictConfig) -> dict:
    """Run one configuration; returns its run key, MLflow run id and metrics. The hub data sets and
    models it reads are its own (a multirun's earlier points in this process are not tagged on it)."""
    from limo_exp.data import hub

    with hub.recording():
        return _run(cfg)


def _run(cfg: DictConfig) -> dict:
    import torch
    from accelerate.utils import broadcast_object_list, set_seed

    from limo_exp import training
    from limo_exp.data import hub
    from limo_exp.evaluation.evaluate import evaluate_to_dir
    from limo_exp.evaluation.isolated import evaluate_isolated

    spec = parse(cfg)
    c = spec.config
    gpu = torch.cuda.is_available()
    accelerator = training.make_accelerator(gpu)
    main_rank, distributed = accelerator.is_main_process, accelerator.num_processes > 1
    prepare.check(spec, accelerator.num_processes)  # before any curation or model load
    plan_points.memory_check(c, accelerator.num_processes)  # a point the plan says cannot fit the GPU
    training.check_loss_impl(c.train)  # a Liger loss needs CUDA and liger-kernel
    set_seed(c.seed)

    point = prepare.identify(spec)
    key = point.key
    run_dir = Path(c.paths.output_root) / "runs" / key
    tracker = make_tracker(c.tracking) if main_rank else NullTracker()
    done = already_done(tracker, key, c.force)
    if distributed:  # rank 0 decides for all, or the others would wait in training
        done = broadcast_object_list([done])[0]
    if done is not None:
        run_log.link_child(tracker, parent_run_id(sweep_dir()), key, done["run_id"])  # reused in this sweep
        return done

    axes = sweep_log.point_axes(sweep_dir(), job_overrides())  # what this point of a sweep varies
    name = run_log.run_name(c.quality.name, c.selection.strategy, c.data.n_samples, c.seed, axes)
    root = c.paths.output_root
    tags = {MODEL_TAG: c.model.name, "limo.pool_fingerprint": point.fingerprint}
    tags["limo.run_dir"] = run_log.relative(run_dir, root)
    if hydra_output_dir():
        tags["limo.hydra_output_dir"] = run_log.relative(hydra_output_dir(), root)
    tags |= hub.as_tags(hub.loaded())  # the commit and row count of every hub data set read
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir if main_rank else None):
        earlier = tracker.close_unfinished(key)  # attempts that died: the lock says none is alive
        tags |= {"limo.previous_attempt": earlier[0]} if earlier else {}
        parent = parent_run_id(sweep_dir())
        with tracker.run(name, run_log.run_tags(key, "run", **tags), parent):
            if main_rank and hydra_output_dir() and tracker.run_id:  # where a launcher's job finds its run
                (Path(hydra_output_dir()) / RUN_ID_FILE).write_text(tracker.run_id)
            for old in earlier:  # the killed attempts say which run replaced them
                tracker.set_tags({"limo.replaced_by": tracker.run_id}, run_id=old)
            run_log.link_child(tracker, parent, key, tracker.run_id)
            tracker.log_params(run_log.run_params(spec.params(), tuple(axes)))
            if main_rank:  # files are written by rank 0 only
                resolved = OmegaConf.to_container(cfg, resolve=True)  # secrets masked, as in params
                (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(mask_tree(resolved)))
                tracker.log_artifact(run_dir / "config.yaml")
                run_log.log_environment(tracker, run_dir)  # environment.txt: every distribution

            examples = _curate_and_select(point, run_dir, tracker, main_rank)
            ids = [e.id for e in examples]

            # model, train (from the last saved state, if a killed attempt left one), save; then
            # everything of training let go: evaluation (vLLM on the same GPU) starts on free memory
            metrics = _train_and_save(c, key, examples, run_dir, accelerator, tracker)
            hand_back(accelerator)
            ckpt = run_dir / "checkpoint"
            if distributed:  # evaluation is rank 0's alone: no rank waits at a barrier meanwhile
                accelerator.wait_for_everyone()  # but it starts once every rank has handed its memory back
                torch.distributed.destroy_process_group()
                if not main_rank:
                    return {"run_key": key, "run_id": None, "skipped": False, "metrics": metrics}

            # evaluate (rank 0, in a clean process after multi-process training) and log
            evaluate = evaluate_isolated if distributed else evaluate_to_dir
            ev = evaluate(str(ckpt), c.eval, run_dir / "eval", **eval_options(c))
            metrics |= ev.metrics
            run_log.log_evaluation(tracker, ev.metrics, ev.settings, ev.artifacts, root)
            if c.tracking.log_model:
                tracker.log_model(ckpt, c.tracking.log_model)
            if not c.train.save:
                shutil.rmtree(ckpt, ignore_errors=True)
            out = {"run_key": key, "run_id": tracker.run_id, "skipped": False, "metrics": metrics}
            return out | {"selected_ids": ids, "run_dir": str(run_dir)}


def _train_and_save(c, key: str, examples: list, run_dir: Path, accelerator, tracker) -> dict:
    """Load the model, train it (from the last saved state, if a killed attempt left one), save it
    to ``<run_dir>/checkpoint`` and log the training figures; returns only those figures. The model,
    its optimizer and the result die with this frame (``hand_back`` then clears the Accelerator)."""
    from limo_exp import training
    from limo_exp.data import hub
    from limo_exp.training import checkpoints

    root, state_dir = c.paths.output_root, run_dir / "state"
    found = checkpoints.latest(state_dir, key)  # a state of another run key: an error before the model loads
    if found:  # ... and one this launch cannot load (other processes, layout or steps)
        n = accelerator.num_processes
        per_step = training.sequences_per_step(c.train, n)
        checkpoints.check_launch(*found, n, checkpoints.layout(accelerator), per_step)
    with accelerator.main_process_first():
        base = training.resolve(c.model, c.paths.cache_dir)
    data = training.prepare(
        examples, training.load_tokenizer(base, c.model.trust_remote_code, c.model.revision), c.train
    )
    model, tok = training.load_for_training(base, c.model, c.train)  # after the data checks
    if c.train.lora:
        tracker.log_metrics({"train/trainable_fraction": training.lora.trainable_fraction(model)})
    attn = model.config._attn_implementation
    tags = {"limo.base_model": run_log.relative(base, root), "limo.attn_implementation": attn}
    tracker.set_tags(tags | hub.as_tags(hub.loaded()))  # a hub model's commit too
    n_params = training.models.n_parameters(model)  # whole, though ZeRO-3 partitioned it at load
    kw = {"seed": c.seed, "state_dir": state_dir, "run_key": key}
    with stopping.deferred():  # SIGTERM: the state is saved at the end of the step, then KILLED
        result = training.train(model, tok, data, c.train, accelerator, tracker.log_metrics, **kw)
    if stopping.asked():  # it came after the last step's check
        sys.exit(128 + stopping.asked())
    metrics = run_log.log_training(tracker, result, len(examples), n_params, accelerator.num_processes)
    training.save(result.model, tok, str(run_dir / "checkpoint"), accelerator)
    if accelerator.is_main_process and not c.train.keep_states_at_end:
        checkpoints.remove(state_dir)
    result.model = result.optimizer = None
    return metrics


def hand_back(accelerator) -> None:
    """Let go of what training left behind, so evaluation starts on free memory (vLLM takes
    ``eval.vllm_gpu_memory_utilization`` of the GPU when it starts): the Accelerator's lists of
    prepared models, optimizers, schedulers and dataloaders, the scheduler it saves with each
    state, any compiled graphs; then ``gc.collect()`` and, on CUDA, ``torch.cuda.empty_cache()``
    (PyTorch's cached blocks back to the driver). The caller holds no reference to any of them."""
    import gc

    import torch

    accelerator._custom_objects.clear()  # register_for_checkpointing(scheduler): it holds the optimizer
    accelerator.free_memory()  # _models, _optimizers, _schedulers, _dataloaders, the DeepSpeed engine
    if "torch._dynamo" in sys.modules:  # graphs compiled during training hold their parameters
        torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _curate_and_select(point: prepare.Point, run_dir: Path, tracker, main_rank: bool) -> list:
    """Curate and select N (``prepare.select``), log the funnel, the selection and the datasets."""
    from limo_exp import curation
    from limo_exp.data import pools
    from limo_exp.evaluation import registry

    c = point.spec.config
    prepare.select(point)
    curated, examples = point.curated, point.examples
    files = curation.write_outputs(curated, run_dir / "curation", copy_pool=False) if main_rank else []
    if main_rank:
        cached = " (from cache)" * curated.from_cache
        log.info("curation funnel%s:\n%s", cached, curation.format_funnel(curated.funnel))
    run_log.log_curation(tracker, curated.funnel, curated.from_cache, point.curation_seconds, files)
    run_log.log_teacher_cost(tracker, point.pool)  # a distilled pool's generation is part of its cost
    tracker.log_metrics(point.figures)  # train/*: questions, words trained on and cut, shares
    if main_rank:
        (run_dir / "selected_ids.json").write_text(json.dumps([e.id for e in examples], indent=0))
        tracker.log_artifact(run_dir / "selected_ids.json")
    strategy = "" if c.selection.strategy == "random" else f"/{c.selection.strategy}"
    subset = f"train/{c.pool.name}/{c.quality.name}{strategy}/n{len(examples)}"
    origin = pools.pool_origin(c.pool)
    run_log.log_datasets(tracker, point.pool, c.pool.name, point.fingerprint, examples, subset, origin)
    sources = {b: registry.data_source(b, c.eval.data_dir) for b in point.benchmarks}
    run_log.log_benchmarks(tracker, point.benchmarks, sources, c.eval.limit)
    return examples


def _run_and_print(cfg: DictConfig) -> float | None:
    stop_on_signals()  # again: a job of hydra/launcher=slurm or parallel runs in a process of its own
    rank0 = int(os.environ.get("RANK", "0")) == 0  # the global rank: machine 1's first process is not
    try:
        out = run(cfg)
    except (KeyboardInterrupt, SystemExit) as e:
        if rank0:  # the sweep's parent run is marked by the rank that tracks, as the point's run is
            fail_sweep(
                cfg, killed=isinstance(e, KeyboardInterrupt) or (isinstance(e.code, int) and e.code >= 128)
            )
        raise
    except BaseException:
        if rank0:
            fail_sweep(cfg)
        raise
    if not rank0:
        return None
    state = "skipped (already FINISHED)" if out["skipped"] else "finished"
    print(f"\nrun {out['run_id']} {state}; run_key {out['run_key']}")
    if out.get("run_dir"):
        print(f"  outputs in {out['run_dir']}")
    head = accuracies(out["metrics"])  # a reused run of an older store: its names read the same
    print_metrics(head)
    print_metrics(
        out["metrics"], lambda k: k.startswith("eval/") or k in ("train/final_loss", "train/tokens_per_s")
    )
    return next(iter(head.values()), None)


main = command(_run_and_print)
