"""Supervised fine-tuning with Accelerate: the training loop, flat and top to bottom.

``train()`` is the library function ``limo-exp run`` calls. Run it on several processes with
``accelerate launch --config_file conf/accelerate/ddp.yaml -m limo_exp run ...``: every rank
composes the same config and run key; rank 0 tracks and evaluates.

Loss: cross-entropy summed over the assistant tokens of all micro-batches of one optimizer
step (on all ranks) and divided by their number, so gradient accumulation and data
parallelism give the same update as one big batch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limo_exp.config import TrainConfig
from limo_exp.data import progress
from limo_exp.data.records import Example
from limo_exp.training.batching import best_fit_decreasing, prepare
from limo_exp.training.sft_data import Tokenized, collate, pack

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: Any = None  # the model as prepared by Accelerate (DDP / FSDP / DeepSpeed engine): save this
    optimizer: Any = None
    loss_impl: str = ""  # liger | target_only | hf, as resolved from train.loss_impl
    resumed_from: str = ""  # the saved state this attempt started from ("" for a fresh start)
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    sequences: int = 0  # in the training set: one per example, two under train.format=multitask
    target_tokens: int = 0
    seen_tokens: int = 0  # tokens computed on, padding included
    real_tokens: int = 0  # tokens of the examples themselves
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.seen_tokens / self.seconds if self.seconds else 0.0


def _micro(cfg: TrainConfig) -> int:
    """Sequences per micro-batch in the step arithmetic: with a token budget, one sequence is the
    unit (rows are formed per step), else ``batch_size``."""
    return 1 if cfg.max_tokens_per_micro_batch else cfg.batch_size


def checkpointing(cfg: TrainConfig) -> bool:
    """Gradient checkpointing: as configured, or ("auto") for sequences over 8k tokens."""
    g = cfg.gradient_checkpointing
    return cfg.max_length > 8192 if g == "auto" else bool(g)


def _base(model):
    """The model itself, or under LoRA the base model the adapters wrap."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def skip_checkpointing(model, n: int) -> None:
    """Run the last ``n`` decoder layers without gradient checkpointing (their activations are
    kept: no recomputation, more memory). ValueError when the model has fewer layers."""
    if not n:
        return
    base = _base(model)
    layers = base.get_decoder().layers
    if n > len(layers):
        raise ValueError(f"train.checkpoint_skip_layers={n}, but the model has {len(layers)} decoder layers")
    for layer in layers[len(layers) - n :]:
        layer.gradient_checkpointing = False  # transformers' GradientCheckpointingLayer reads this per call


def accumulation_steps(cfg: TrainConfig, world_size: int = 1) -> int:
    """Micro-batches per optimizer step on each of ``world_size`` processes: ``global_batch_size /
    (batch_size x world_size)`` when a global batch is set (the same steps on 1 or 8 GPUs), else
    ``grad_accum`` (default 1). Raises ValueError when the global batch does not divide."""
    if cfg.global_batch_size is None:
        if cfg.max_tokens_per_micro_batch:
            raise ValueError(
                "train.max_tokens_per_micro_batch needs train.global_batch_size (sequences per step)"
            )
        return cfg.grad_accum or 1
    per_micro = _micro(cfg) * world_size
    accum, rest = divmod(cfg.global_batch_size, per_micro)
    if rest or accum < 1:
        raise ValueError(
            f"train.global_batch_size={cfg.global_batch_size} is not a multiple of train.batch_size="
            f"{cfg.batch_size} x {world_size} process(es) = {per_micro}: change one of them"
        )
    if cfg.grad_accum is not None and cfg.grad_accum != accum:
        raise ValueError(
            f"train.grad_accum={cfg.grad_accum} contradicts train.global_batch_size={cfg.global_batch_size} "
            f"(= {accum} micro-batches of {cfg.batch_size} on {world_size} process(es)): set grad_accum=null"
        )
    return accum


def check_loss_impl(cfg: TrainConfig) -> None:
    """``train.loss_impl=liger`` or ``train.liger_layers`` where Liger cannot run: a ValueError
    before any model loads."""
    from limo_exp.training import loss

    if cfg.loss_impl == "liger" and loss.liger_missing():
        raise ValueError(f"train.loss_impl=liger: {loss.liger_missing()}; use auto or target_only")
    if cfg.liger_layers and loss.liger_missing():
        raise ValueError(f"train.liger_layers=true: {loss.liger_missing()}")


def use_loss(model, requested: str) -> str:
    """Install the target-only loss on ``model`` (its base model under LoRA) and return the loss
    actually used: ``liger`` (Liger's fused kernel at the target positions) for ``liger``, and
    for ``auto`` on CUDA where liger-kernel is installed; ``target_only`` (chunked, plain torch)
    for ``target_only`` and otherwise under ``auto``; ``hf`` (full logits) for ``hf`` and for
    ``auto`` on an architecture the target-only loss does not know."""
    from limo_exp.training import loss

    base = _base(model)
    if requested == "hf" or (requested == "auto" and not loss.supports(base)):
        return "hf"
    liger = requested == "liger" or (requested == "auto" and not loss.liger_missing())
    loss.install(base, kernel="liger" if liger else "torch")
    return "liger" if liger else "target_only"


def n_optimizer_steps(n_examples: int, cfg: TrainConfig, world_size: int = 1) -> int:
    if cfg.max_steps:
        return int(cfg.max_steps)
    per_step = _micro(cfg) * accumulation_steps(cfg, world_size) * world_size
    return max(1, math.ceil(cfg.epochs * n_examples / per_step))


def train(
    model,
    tok,
    examples: list[Example] | list[Tokenized],
    cfg: TrainConfig,
    accelerator,
    log_metrics: Callable[[dict, int], None] = lambda m, s: None,
    *,
    seed: int = 0,
    state_dir: str | Path | None = None,
    run_key: str = "",
) -> TrainResult:
    """Train ``model`` on ``examples``; ``TrainResult.model`` is the prepared (wrapped) model to save.

    ``examples`` may come tokenised already (``batching.prepare``, as ``limo-exp run`` does to
    check the data before loading the model). ``seed`` orders the examples over epochs (the run's seed). With ``state_dir``, training
    continues from the newest state saved there (for ``run_key``), and saves one every
    ``cfg.checkpoint_every`` steps, keeping ``cfg.keep_states``; losses restored from a state
    are passed to ``log_metrics`` again, so the run's history is whole."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from limo_exp.training import checkpoints
    from limo_exp.training.optim import make_optimizer

    data = examples if examples and isinstance(examples[0], Tokenized) else prepare(examples, tok, cfg)
    world, rank = accelerator.num_processes, accelerator.process_index
    budget = cfg.max_tokens_per_micro_batch
    accum = accumulation_steps(cfg, world)
    steps = n_optimizer_steps(len(data), cfg, world)
    if checkpointing(cfg):
        model.gradient_checkpointing_enable()
        skip_checkpointing(model, cfg.checkpoint_skip_layers)
    low = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype != torch.float32})
    if low and cfg.optimizer == "adamw":  # AdamW on 16-bit weights rounds small updates away
        raise ValueError(
            f"trainable weights in {', '.join(low)} with train.optimizer=adamw lose most updates at "
            f"lr={cfg.lr}: load them in train.master_dtype=float32, or use train.optimizer=adamw_kahan"
        )
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    loss_impl = use_loss(model, cfg.loss_impl)
    if cfg.liger_layers:  # Liger's RMSNorm / SwiGLU / RoPE kernels (CUDA), opt-in
        from limo_exp.training.loss import liger_layers

        liger_layers(_base(model))
    sched = get_cosine_schedule_with_warmup(opt, int(cfg.warmup_ratio * steps), steps)
    # Accelerate marks the last micro-batch of each step as the one that syncs gradients (DDP
    # all-reduce, DeepSpeed's engine step) and divides every loss by grad_accum.
    accelerator.gradient_accumulation_steps = 1 if budget else accum  # budget: rows vary, synced by hand
    accelerator.step = 0
    ds = getattr(accelerator.state, "deepspeed_plugin", None)
    if ds is not None and budget:
        raise ValueError("train.max_tokens_per_micro_batch is not supported with DeepSpeed: use FSDP or DDP")
    if ds is not None:  # no dataloader is prepared, so DeepSpeed learns the micro-batch size here
        ds.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.batch_size
    model, opt = accelerator.prepare(model, opt)
    if accelerator.gradient_accumulation_steps != (1 if budget else accum):
        raise ValueError(
            f"train.grad_accum={accum} but the Accelerate/DeepSpeed config says "
            f"{accelerator.gradient_accumulation_steps}: remove gradient_accumulation_steps from the accelerate config"
        )
    model.train()

    # A seeded order over epochs; each rank takes its own interleaved share of every step.
    rng = random.Random(seed)
    order: list[int] = []
    micro = _micro(cfg)
    per_step = accum * micro * world  # sequences per optimizer step
    while len(order) < steps * per_step:
        epoch = list(range(len(data)))
        rng.shuffle(epoch)
        order += epoch
    result = TrainResult(model=model, optimizer=opt, loss_impl=loss_impl, sequences=len(data))
    accelerator.register_for_checkpointing(sched)
    found = checkpoints.latest(state_dir, run_key)
    earlier = 0.0  # seconds spent by earlier attempts
    if found is not None:
        path, done = found
        accelerator.load_state(str(path))  # model, optimizer, scheduler, RNG
        result.losses, result.steps, earlier = list(done.losses), done.step, done.seconds
        result.target_tokens, result.seen_tokens, result.real_tokens = (
            done.target_tokens,
            done.seen_tokens,
            done.real_tokens,
        )
        result.resumed_from = str(path)
        log.info("resuming from %s (step %d of %d)", path, done.step, steps)
        for i, old in enumerate(done.losses):
            log_metrics({"train/loss": old}, i + 1)
    start, real_before = time.perf_counter(), result.real_tokens
    shown = progress.bar(
        "train", total=steps, unit="step", initial=result.steps, show=accelerator.is_main_process
    )
    for step in range(result.steps, steps):
        mine = [data[i] for i in order[step * per_step : (step + 1) * per_step][rank::world]]
        if budget:  # rows of at most `budget` tokens, the fullest first
            batches = [
                [mine[i] for i in row]
                for row in best_fit_decreasing([len(t.input_ids) for t in mine], budget)
            ]
        else:
            batches = [mine[j : j + micro] for j in range(0, len(mine), micro)]
        n_local = torch.tensor(float(sum(t.n_target for t in mine)), device=accelerator.device)
        n_global = accelerator.reduce(n_local, reduction="sum").item()
        # HF's loss is sum / num_items_in_batch: dividing by n_global / (world * grad_accum) undoes
        # Accelerate's / grad_accum and DDP's mean over ranks, leaving sum / n_global for the step.
        scale = n_global / (world * (1 if budget else accum))
        loss_sum, seen, real = 0.0, 0, sum(len(t.input_ids) for t in mine)
        for j, batch in enumerate(batches):
            tensors = pack(batch) if cfg.packing or budget else collate(batch, tok.pad_token_id)
            tensors = {name: t.to(accelerator.device) for name, t in tensors.items()}
            if budget:  # gradients are reduced across ranks once, at each rank's last row
                sync = contextlib.nullcontext() if j == len(batches) - 1 else accelerator.no_sync(model)
            else:
                sync = accelerator.accumulate(model)
            with sync:
                out = model(**tensors, use_cache=False, num_items_in_batch=scale)
                accelerator.backward(out.loss)
            loss_sum += out.loss.detach().float().item() * scale
            seen += int(tensors["input_ids"].numel())
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        sums = torch.tensor([loss_sum, seen, real], dtype=torch.float64, device=accelerator.device)
        total, seen_all, real_all = accelerator.reduce(sums, reduction="sum").tolist()
        loss = total / n_global
        result.losses.append(loss)
        result.steps += 1
        result.target_tokens += int(n_global)
        result.seen_tokens += int(seen_all)
        result.real_tokens += int(real_all)
        log_metrics({"train/loss": loss, "train/lr": sched.get_last_lr()[0]}, step + 1)
        tokens_s = (result.real_tokens - real_before) / max(time.perf_counter() - start, 1e-9)
        shown.set_postfix_str(f"loss {loss:.4f}, {tokens_s:,.0f} tokens/s", refresh=False)
        shown.update(1)
        every = cfg.checkpoint_every if state_dir is not None else None
        if every and result.steps % every == 0 and result.steps < steps:  # the last: the saved model
            r, seconds = result, earlier + time.perf_counter() - start
            done = checkpoints.Progress(
                run_key, r.steps, r.losses, r.target_tokens, r.seen_tokens, seconds, r.real_tokens
            )
            checkpoints.save(accelerator, state_dir, done, cfg.keep_states)
    shown.close()
    result.seconds = earlier + time.perf_counter() - start
    return result


def save(model, tok, out_dir: str, accelerator) -> None:
    """Save weights and tokenizer from rank 0 (after all ranks are done)."""
    from limo_exp.training.lora import merged

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    if hasattr(unwrapped, "merge_and_unload"):  # LoRA: adapters folded into the weights
        unwrapped = merged(unwrapped)
        state = None
    else:  # a full state dict gathered from every rank (FSDP / ZeRO-3 shard the weights)
        state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        unwrapped.save_pretrained(out_dir, safe_serialization=True, state_dict=state)
        tok.save_pretrained(out_dir)
    accelerator.wait_for_everyone()
