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
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limo_exp import stopping
from limo_exp.config import TrainConfig
from limo_exp.data import progress
from limo_exp.data.records import Example
from limo_exp.training import syncs
from limo_exp.training.batching import prepare
from limo_exp.training.optim import fuse_on_device
from limo_exp.training.recipe import (  # noqa: F401  (the loop's public names, as before)
    accumulation_steps,
    check_loss_impl,
    n_optimizer_steps,
    resume,
    sequences_per_step,
    setup,
    sharded,
    skip_checkpointing,
    use_loss,
)
from limo_exp.training.sft_data import Tokenized
from limo_exp.training.steps import (  # noqa: F401  (checkpointing: the loop's public name, as before)
    batch_tensors,
    checkpointing,
    micro_size,
    out_of_memory,
    plan_step,
    reads_boundaries,
    step_order,
)

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
    attn_implementation: str = ""  # the attention the model trained with, and why (attention.describe)
    attn_reason: str = ""
    liger_layers: bool = False  # Liger's RMSNorm / SwiGLU / RoPE kernels were on

    @property
    def tokens_per_s(self) -> float:
        return self.seen_tokens / self.seconds if self.seconds else 0.0


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
    are passed to ``log_metrics`` again, so the run's history is whole.

    A step is planned on the host (``plan_step``), runs its forwards and backwards with nothing
    read back from the device, and its loss is read one step later, when the next step's work is
    already queued: the GPU never waits on Python between steps."""
    import torch

    from limo_exp.training import checkpoints

    data = examples if examples and isinstance(examples[0], Tokenized) else prepare(examples, tok, cfg)
    ready = setup(model, data, cfg, accelerator)
    model, opt, sched = ready.model, ready.optimizer, ready.scheduler
    fuse_on_device(opt)  # FSDP: built over CPU weights, stepped over GPU shards
    result = TrainResult(model=model, optimizer=opt, loss_impl=ready.loss_impl, sequences=len(data))
    result.attn_implementation, result.attn_reason = ready.attn_implementation, ready.attn_reason
    result.liger_layers = ready.liger_layers
    world, rank = accelerator.num_processes, accelerator.process_index
    budget, accum = cfg.max_tokens_per_micro_batch, accumulation_steps(cfg, world)
    steps = n_optimizer_steps(len(data), cfg, world)
    per_step = sequences_per_step(cfg, world)
    order = step_order(len(data), steps, per_step, seed)
    earlier = resume(accelerator, state_dir, run_key, result, steps, log_metrics, per_step)
    packed = cfg.packing or bool(budget) or reads_boundaries(result.attn_implementation)
    targets = result.loss_impl != "hf"
    fsdp = sharded(accelerator)
    start, real_before = time.perf_counter(), result.real_tokens
    shown = progress.bar(
        "train", total=steps, unit="step", initial=result.steps, show=accelerator.is_main_process
    )
    pending = None  # the last step's loss, still on the device

    def account(p) -> bool:  # read a finished step's loss (the device is a step ahead by now)
        step, total, lr, plan, seen = p
        loss = total.read() / plan.n_target
        (votes,) = total.rest()  # ranks asked to stop during the step
        result.losses.append(loss)
        result.steps, result.target_tokens = step + 1, result.target_tokens + plan.n_target
        result.seen_tokens, result.real_tokens = result.seen_tokens + seen, result.real_tokens + plan.real
        log_metrics({"train/loss": loss, "train/lr": lr}, step + 1)
        tokens_s = (result.real_tokens - real_before) / max(time.perf_counter() - start, 1e-9)
        shown.set_postfix_str(f"loss {loss:.4f}, {tokens_s:,.0f} tokens/s", refresh=False)
        shown.update(1)
        return votes > 0

    for step in range(result.steps, steps):
        plan = plan_step(data, order[step * per_step : (step + 1) * per_step], cfg, world)
        rows = plan.rows[rank]
        # HF's loss is sum / num_items_in_batch: dividing by n_target / (world * grad_accum) undoes
        # Accelerate's / grad_accum and DDP's mean over ranks, leaving sum / n_target for the step.
        scale = plan.n_target / (world * (1 if budget else accum))
        total = None
        try:
            for j, row in enumerate(rows):
                tensors = batch_tensors([data[i] for i in row], tok, packed, targets, accelerator.device)
                if fsdp:  # reduce-scattered at every row: skipping it would keep whole gradients
                    sync = contextlib.nullcontext()
                elif budget:  # gradients are reduced across ranks once, at each rank's last row
                    sync = contextlib.nullcontext() if j == len(rows) - 1 else accelerator.no_sync(model)
                else:
                    sync = accelerator.accumulate(model)
                with sync, syncs.step():  # syncs.step: the host-read check, when a test turns it on
                    with accelerator.autocast():  # under FSDP, Accelerate leaves autocast to the loop
                        out = model(**tensors, use_cache=False, num_items_in_batch=scale)
                    accelerator.backward(out.loss)
                    part = out.loss.detach().float() * scale
                    total = part if total is None else total + part
            with syncs.step():
                if cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                # the step's summed loss and this rank's vote to stop (1: a signal asked), reduced
                # over ranks and copied to the host without waiting
                vote = total.new_full((), float(stopping.asked() is not None), dtype=torch.float64)
                both = torch.stack([total.to(torch.float64), vote])
                lagged = LaggedValue(accelerator.reduce(both, reduction="sum"))
        except torch.OutOfMemoryError as e:
            width = max((sum(len(data[i].input_ids) for i in r) for r in rows), default=0)
            raise out_of_memory(e, cfg, step + 1, width, state_dir, run_key) from e
        seen = _seen(data, plan, packed)
        voted = account(pending) if pending is not None else False
        pending = (step, lagged, sched.get_last_lr()[0], plan, seen)
        every = cfg.checkpoint_every if state_dir is not None else None
        stop = _stop_asked(world, voted)
        if stop or (every and (step + 1) % every == 0 and step + 1 < steps):  # the last: the saved model
            account(pending)
            pending = None
            r, seconds = result, earlier + time.perf_counter() - start
            done = checkpoints.Progress(
                run_key, r.steps, r.losses, r.target_tokens, r.seen_tokens, seconds, r.real_tokens
            )
            done.world, done.layout, done.per_step = world, checkpoints.layout(accelerator), per_step
            if state_dir is not None:
                checkpoints.save(accelerator, state_dir, done, cfg.keep_states)
            if stop:  # a signal asked: the state is saved, the run ends KILLED and resumes from it
                sys.exit(128 + stop)
    if pending is not None:
        account(pending)
    shown.close()
    result.seconds = earlier + time.perf_counter() - start
    return result


class LaggedValue:
    """A device scalar (or a few values) on its way to the host: on CUDA a non-blocking copy into
    pinned memory and an event after it, so that ``read()`` a step later waits for that copy only,
    not for the work queued since (a plain ``.item()`` then would wait for the next step too, and
    the GPU would idle while the host logs and packs rows); elsewhere a plain copy."""

    def __init__(self, value):
        import torch

        value = value.detach().to(torch.float64)
        if value.device.type == "cuda":
            self.host = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
            self.host.copy_(value, non_blocking=True)
            self.ready = torch.cuda.Event()
            self.ready.record()
        else:
            self.host, self.ready = value.clone(), None

    def read(self) -> float:
        """The value (a vector's first), once the copy is done."""
        if self.ready is not None:
            self.ready.synchronize()
        return float(self.host.reshape(-1)[0].item())

    def rest(self) -> list[float]:
        """A vector's values after the first (after ``read``: the same copy)."""
        return self.host.reshape(-1)[1:].tolist()


def _stop_asked(world: int, voted: bool) -> int:
    """The signal that asked this process to stop (``limo_exp.stopping``), agreed by every rank.
    One process stops at the end of the step the signal came in; several stop together at the end
    of the step after it: each step's loss all-reduce carries every rank's vote (``voted``: a rank
    was asked during the last step), read with the loss a step later, so the vote costs no
    collective and no wait of its own. A rank no signal reached (SLURM signals every process of a
    job step) stops as if SIGTERM had."""
    asked = stopping.asked() or 0
    if world == 1:
        return asked
    return (asked or signal.SIGTERM) if voted else 0


@dataclass(frozen=True)
class TokenCount:
    """What ``train`` will compute on, as it logs it (``train/steps``, ``train/target_tokens``,
    ``train/seen_tokens``; real: the examples' own tokens)."""

    steps: int
    target: int
    seen: int
    real: int
    squares: int  # sum of the sequences' squared lengths: causal attention's work, per document


def count_tokens(data: list[Tokenized], cfg: TrainConfig, world: int, seed: int, attn: str) -> TokenCount:
    """``train``'s steps and token counts for tokenised ``data`` on ``world`` processes with
    attention ``attn``, on the host without a model (``limo-exp plan``): the same step plans."""
    steps = n_optimizer_steps(len(data), cfg, world)
    per_step = sequences_per_step(cfg, world)
    order = step_order(len(data), steps, per_step, seed)
    packed = cfg.packing or bool(cfg.max_tokens_per_micro_batch) or reads_boundaries(attn)
    target = seen = real = squares = 0
    for step in range(steps):
        indices = order[step * per_step : (step + 1) * per_step]
        plan = plan_step(data, indices, cfg, world)
        target, seen, real = target + plan.n_target, seen + _seen(data, plan, packed), real + plan.real
        squares += sum(len(data[i].input_ids) ** 2 for i in indices)
    return TokenCount(steps, target, seen, real, squares)


def _seen(data: list[Tokenized], plan, packed: bool) -> int:
    """Tokens a step computes on over all ranks, padding included."""
    return sum(_row_width(data, r, packed) for p in plan.rows for r in p if r)


def _row_width(data: list[Tokenized], row: tuple[int, ...], packed: bool) -> int:
    """Tokens one forward computes on: the row's, or under padding the batch's width x its size."""
    lengths = [len(data[i].input_ids) for i in row]
    return sum(lengths) if packed else max(lengths) * len(lengths)


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
