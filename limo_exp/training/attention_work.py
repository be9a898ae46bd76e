"""Counting the attention work of a model's forwards (``attention.count_attention``, for the
benches): the query-key pairs every attention call computes against the pairs per-document
attention needs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

# the attention ``training.attention`` registers (its NAME), named here where nothing heavy is
# imported: registering it imports transformers' modeling code (~4 s), which limo-exp plan does not need
VARLEN = "limo_varlen"
# implementations that read packed rows' boundaries: ``attention.NAME`` and flash-attn's
READS_BOUNDARIES = (VARLEN, "flash_attention")


@dataclass
class AttentionWork:
    """Query-key pairs over all attention calls: computed by the kernel, and needed by
    per-document attention (each document against itself only)."""

    computed: int = 0
    needed: int = 0
    calls: int = 0
    masks: int = 0  # calls that received a dense mask

    @property
    def ratio(self) -> float:
        return self.computed / self.needed if self.needed else float("nan")


@contextlib.contextmanager
def count_attention(model):
    """Count the query-key pairs every attention call of ``model`` computes (full squares, so the
    causal half does not enter the ratio): a call given a 4D mask computes the whole [q x k]; a
    ``limo_varlen`` or flash-attention call given boundaries, each document's square; any other
    call, the whole row. ``needed`` is the documents' squares (from the boundaries, or the whole
    row when none are given). For the benches: it reads the boundaries on the host."""
    work = AttentionWork()
    impl = lambda: model.config._attn_implementation  # noqa: E731 (read per call: it may change)

    def hook(module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        b, n = hidden.shape[0], hidden.shape[1]
        mask = kwargs.get("attention_mask")
        cu = kwargs.get("cu_seq_lens_q")
        docs = [n] * b if cu is None else [e - s for s, e in zip(cu.tolist()[:-1], cu.tolist()[1:])]
        needed = sum(x * x for x in docs)
        work.calls += 1
        work.needed += needed
        if isinstance(mask, torch.Tensor) and mask.dim() == 4:
            work.masks += 1
            work.computed += b * mask.shape[-2] * mask.shape[-1]
        elif cu is not None and impl().startswith(READS_BOUNDARIES):
            work.computed += needed
        else:
            work.computed += b * n * n

    handles = [
        m.register_forward_pre_hook(hook, with_kwargs=True)
        for name, m in model.named_modules()
        if name.endswith("self_attn")
    ]
    try:
        yield work
    finally:
        for h in handles:
            h.remove()
