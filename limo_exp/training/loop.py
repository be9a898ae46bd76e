"""Supervised fine-tuning with Accelerate: the training loop, flat and top to bottom.

``train()`` is the library function ``limo-exp run`` calls. Run it on several processes with
``accelerate launch --config_file conf/accelerate/ddp.yaml -m limo_exp run ...``: every rank
composes the same config and run key; rank 0 tracks and evaluates.

Loss: cross-entropy summed over the assistant tokens of all micro-batches of one optimizer
step (on all ranks) and divided by their number, so gradient accumulation and data
parallelism give the same update as one big batch.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from limo_exp.config import TrainConfig
from limo_exp.data.records import Example
from limo_exp.training.sft_data import collate, pack, tokenize_example

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: Any = None  # the model as prepared by Accelerate (DDP / FSDP / DeepSpeed engine): save this
    optimizer: Any = None
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    target_tokens: int = 0
    seen_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.seen_tokens / self.seconds if self.seconds else 0.0


def accumulation_steps(cfg: TrainConfig, world_size: int = 1) -> int:
    """Micro-batches per optimizer step on each of ``world_size`` processes: ``global_batch_size /
    (batch_size x world_size)`` when a global batch is set (the same steps on 1 or 8 GPUs), else
    ``grad_accum`` (default 1). Raises ValueError when the global batch does not divide."""
    if cfg.global_batch_size is None:
        return cfg.grad_accum or 1
    per_micro = cfg.batch_size * world_size
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


def n_optimizer_steps(n_examples: int, cfg: TrainConfig, world_size: int = 1) -> int:
    if cfg.max_steps:
        return int(cfg.max_steps)
    per_step = cfg.batch_size * accumulation_steps(cfg, world_size) * world_size
    return max(1, math.ceil(cfg.epochs * n_examples / per_step))


def train(
    model,
    tok,
    examples: list[Example],
    cfg: TrainConfig,
    accelerator,
    log_metrics: Callable[[dict, int], None] = lambda m, s: None,
    *,
    seed: int = 0,
) -> TrainResult:
    """Train ``model`` on ``examples``; ``TrainResult.model`` is the prepared (wrapped) model to save.

    ``seed`` orders the examples over epochs (the run's seed)."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from limo_exp.training.optim import make_optimizer

    data = []
    for e in examples:
        t = tokenize_example(
            e, tok, instruction=cfg.instruction, system_prompt=cfg.system_prompt, max_length=cfg.max_length
        )
        if t.n_target == 0:  # the prompt alone fills max_length: nothing of the solution is learned
            log.warning("example %s has no target tokens within max_length=%d; dropped", e.id, cfg.max_length)
            continue
        data.append(t)
    if not data:
        raise ValueError(f"no example keeps a target token within train.max_length={cfg.max_length}")
    world, rank = accelerator.num_processes, accelerator.process_index
    accum = accumulation_steps(cfg, world)
    steps = n_optimizer_steps(len(data), cfg, world)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    low = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype != torch.float32})
    if low and cfg.optimizer == "adamw":  # AdamW on 16-bit weights rounds small updates away
        raise ValueError(
            f"trainable weights in {', '.join(low)} with train.optimizer=adamw lose most updates at "
            f"lr={cfg.lr}: load them in train.master_dtype=float32, or use train.optimizer=adamw_kahan"
        )
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, int(cfg.warmup_ratio * steps), steps)
    # Accelerate marks the last micro-batch of each step as the one that syncs gradients (DDP
    # all-reduce, DeepSpeed's engine step) and divides every loss by grad_accum.
    accelerator.gradient_accumulation_steps = accum
    accelerator.step = 0
    ds = getattr(accelerator.state, "deepspeed_plugin", None)
    if ds is not None:  # no dataloader is prepared, so DeepSpeed learns the micro-batch size here
        ds.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.batch_size
    model, opt = accelerator.prepare(model, opt)
    if accelerator.gradient_accumulation_steps != accum:
        raise ValueError(
            f"train.grad_accum={accum} but the Accelerate/DeepSpeed config says "
            f"{accelerator.gradient_accumulation_steps}: remove gradient_accumulation_steps from the accelerate config"
        )
    model.train()

    # A seeded order over epochs; each rank takes its own interleaved share of every step.
    rng = random.Random(seed)
    order: list[int] = []
    micro = cfg.batch_size
    per_step = accum * micro * world
    while len(order) < steps * per_step:
        epoch = list(range(len(data)))
        rng.shuffle(epoch)
        order += epoch
    result = TrainResult(model=model, optimizer=opt)
    start = time.perf_counter()
    for step in range(steps):
        mine = order[step * per_step : (step + 1) * per_step][rank::world]
        batches = [[data[i] for i in mine[j : j + micro]] for j in range(0, len(mine), micro)]
        n_local = torch.tensor(float(sum(t.n_target for b in batches for t in b)), device=accelerator.device)
        n_global = accelerator.reduce(n_local, reduction="sum").item()
        # HF's loss is sum / num_items_in_batch: dividing by n_global / (world * grad_accum) undoes
        # Accelerate's / grad_accum and DDP's mean over ranks, leaving sum / n_global for the step.
        scale = n_global / (world * accum)
        loss_sum = 0.0
        for batch in batches:
            tensors = pack(batch) if cfg.packing else collate(batch, tok.pad_token_id)
            tensors = {name: t.to(accelerator.device) for name, t in tensors.items()}
            with accelerator.accumulate(model):
                out = model(**tensors, use_cache=False, num_items_in_batch=scale)
                accelerator.backward(out.loss)
            loss_sum += out.loss.detach().float().item() * scale
            result.seen_tokens += int(tensors["input_ids"].numel())
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        total = accelerator.reduce(torch.tensor(loss_sum, device=accelerator.device), reduction="sum").item()
        loss = total / n_global
        result.losses.append(loss)
        result.steps += 1
        result.target_tokens += int(n_global)
        log_metrics({"train/loss": loss, "train/lr": sched.get_last_lr()[0]}, step + 1)
    result.seconds = time.perf_counter() - start
    result.seen_tokens = int(
        accelerator.reduce(
            torch.tensor(float(result.seen_tokens), device=accelerator.device), reduction="sum"
        ).item()
    )
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
