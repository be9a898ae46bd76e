"""From examples to micro-batches: tokenisation, and token-budget rows packed by best-fit decreasing.

With ``train.max_tokens_per_micro_batch`` a step's sequences are packed into rows of at most that
many tokens (position ids restart per sequence, so attention stays within each sequence), the
fullest rows first: short and long examples give micro-batches of about the same cost, and
padding disappears. The number of rows per step then varies; the loss is still normalised over
the target tokens of the whole step.
"""

from __future__ import annotations

import logging

from limo_exp.config import TrainConfig
from limo_exp.data.records import Example
from limo_exp.training.sft_data import Tokenized, tasks, tokenize_example

log = logging.getLogger(__name__)


def prepare(examples: list[Example], tok, cfg: TrainConfig) -> list[Tokenized]:
    """Tokenise with the model's chat template, one sequence per task of ``train.format`` (an
    example gives two under multitask); drop sequences left without a target token. Raises
    ValueError when none is left, when a multitask example has no answer, or when a sequence is
    longer than the micro-batch token budget (naming the example): all before any model is needed."""
    fmt = cfg.format
    per_example = [tasks(e, fmt, cfg.answer_prefix, cfg.explain_prefix) for e in examples]  # checks first
    data = []
    for e, its_tasks in zip(examples, per_example):
        for task in its_tasks:
            name = "" if task.name == "plain" else f" ({task.name} task)"
            t = tokenize_example(
                task,
                tok,
                instruction=cfg.instruction,
                system_prompt=cfg.system_prompt,
                max_length=cfg.max_length,
            )
            if t.n_target == 0:  # the prompt alone fills max_length: nothing of the target is learned
                log.warning(
                    "example %s%s has no target tokens within max_length=%d; dropped",
                    e.id,
                    name,
                    cfg.max_length,
                )
                continue
            budget = cfg.max_tokens_per_micro_batch
            if budget and len(t.input_ids) > budget:
                raise ValueError(
                    f"example {e.id}{name} is {len(t.input_ids)} tokens long, more than "
                    f"train.max_tokens_per_micro_batch={budget}: raise the budget to at least "
                    f"train.max_length={cfg.max_length}"
                )
            data.append(t)
    if not data:
        raise ValueError(f"no example keeps a target token within train.max_length={cfg.max_length}")
    return data


def best_fit_decreasing(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into bins of total length <= ``budget``: longest first, each
    into the bin it fills most tightly (a new bin when none has room). Deterministic."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        fits = [b for b in range(len(bins)) if room[b] >= lengths[i]]
        if fits:
            b = min(fits, key=lambda b: (room[b], b))
        else:
            bins.append([])
            room.append(budget)
            b = len(bins) - 1
        bins[b].append(i)
        room[b] -= lengths[i]
    return bins
