"""One optimizer step's pieces, apart from the loop that runs them: the step plan (every rank's
rows, computed on the host from the seeded order, pure), the tensors of one forward (target
positions found on the host, copied from pinned memory), and the out-of-memory error that names
the key to lower.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from limo_exp.config import TrainConfig
from limo_exp.training.attention_work import READS_BOUNDARIES
from limo_exp.training.batching import best_fit_decreasing
from limo_exp.training.sft_data import Tokenized, collate, pack


def micro_size(cfg: TrainConfig) -> int:
    """Sequences per micro-batch in the step arithmetic: with a token budget, one sequence is the
    unit (rows are formed per step), else ``batch_size``."""
    return 1 if cfg.max_tokens_per_micro_batch else cfg.batch_size


def checkpointing(cfg: TrainConfig) -> bool:
    """Gradient checkpointing: as configured, or ("auto") for sequences over 8k tokens."""
    g = cfg.gradient_checkpointing
    return cfg.max_length > 8192 if g == "auto" else bool(g)


@dataclass(frozen=True)
class StepPlan:
    """One optimizer step, planned on the host from the seeded order (every rank computes every
    rank's plan, so no collective is needed to agree on it): each rank's forwards, each a list of
    indices into the training data (``[]``: a one-token forward without targets, so every rank runs
    the same number of forwards, as FSDP's all-gathers need), and the step's token counts."""

    rows: tuple[tuple[tuple[int, ...], ...], ...]  # [rank][forward] -> data indices
    n_target: int  # target tokens of the step, all ranks: the loss's denominator
    real: int  # tokens of the step's sequences, all ranks


def plan_step(data: list[Tokenized], indices: list[int], cfg: TrainConfig, world: int) -> StepPlan:
    """Split one step's sequences (``indices`` into ``data``) among ``world`` ranks (interleaved)
    and into forwards: rows of at most ``train.max_tokens_per_micro_batch`` tokens by best-fit
    decreasing, else micro-batches of ``train.batch_size``; shorter ranks padded with empty rows."""
    budget, micro = cfg.max_tokens_per_micro_batch, micro_size(cfg)
    per_rank = []
    for rank in range(world):
        mine = indices[rank::world]
        if budget:  # rows of at most `budget` tokens, the fullest first
            rows = [
                tuple(mine[i] for i in row)
                for row in best_fit_decreasing([len(data[i].input_ids) for i in mine], budget)
            ]
        else:
            rows = [tuple(mine[j : j + micro]) for j in range(0, len(mine), micro)]
        per_rank.append(rows)
    most = max(len(r) for r in per_rank)
    padded = tuple(tuple(r) + ((),) * (most - len(r)) for r in per_rank)
    return StepPlan(
        rows=padded,
        n_target=sum(data[i].n_target for i in indices),
        real=sum(len(data[i].input_ids) for i in indices),
    )


def step_order(n: int, steps: int, per_step: int, seed: int) -> list[int]:
    """The seeded order of sequence indices over epochs, at least ``steps * per_step`` long."""
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * per_step:
        epoch = list(range(n))
        rng.shuffle(epoch)
        order += epoch
    return order


def reads_boundaries(attn_implementation: str) -> bool:
    """Does this attention read document boundaries (so every forward can be one packed row)?"""
    return attn_implementation.startswith(READS_BOUNDARIES)


def batch_tensors(batch: list[Tokenized], tok, packed: bool, targets: bool, device) -> dict:
    """One forward's tensors on ``device``: a packed row (with its boundaries) or a padded batch,
    the target positions found on the host (``targets``: for the target-only loss), copied from
    pinned memory without waiting on CUDA."""
    import torch

    from limo_exp.training.loss import target_positions

    tensors = pack(batch) if packed else collate(batch, tok.pad_token_id)
    if targets:
        tensors |= target_positions(tensors["labels"])
    if torch.device(device).type != "cuda":
        return {name: t.to(device) if isinstance(t, torch.Tensor) else t for name, t in tensors.items()}
    # max_length_q/k stay Python ints: the kernel reads them on the host
    return {
        name: t.pin_memory().to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t
        for name, t in tensors.items()
    }


class StepOutOfMemory(RuntimeError):
    """A step ran out of device memory: names the key to lower and the memory asked for."""


def out_of_memory(
    err: Exception, cfg: TrainConfig, step: int, width: int, state_dir=None, run_key: str = ""
) -> StepOutOfMemory:
    """The error to raise for ``err`` (torch.OutOfMemoryError) at ``step`` (1-based) with rows
    of up to ``width`` tokens: which key to lower, what was asked, where the last state is."""
    import re

    asked = re.search(r"Tried to allocate ([0-9.]+ [KMGT]i?B)", str(err))
    if cfg.max_tokens_per_micro_batch:
        key = f"train.max_tokens_per_micro_batch={cfg.max_tokens_per_micro_batch}"
    else:
        key = f"train.batch_size={cfg.batch_size} (or train.max_length={cfg.max_length})"
    hints = []
    if not checkpointing(cfg):
        hints.append("train.gradient_checkpointing=true")
    if cfg.checkpoint_skip_layers:
        hints.append("train.checkpoint_skip_layers=0")
    from limo_exp.training import checkpoints

    found = checkpoints.latest(state_dir, run_key)
    kept = (
        f"the last saved state ({found[0]}, step {found[1].step}) is kept"
        if found
        else "no state was saved yet"
    )
    return StepOutOfMemory(
        f"out of device memory at training step {step} (rows of up to {width} tokens"
        + (f"; it asked for {asked.group(1)} more" if asked else "")
        + f"): lower {key}"
        + (f", or set {' / '.join(hints)}" if hints else "")
        + f"; {kept} and a relaunch continues from it"
    )
