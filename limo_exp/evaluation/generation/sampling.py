"""Choosing the next token on the device, one row at a time in effect: greedy is the argmax;
sampling draws from each row's own counter-based noise, so a sample depends on its prompt, its
seed and how many tokens it has generated, never on the rows it is batched with.

    pick = select(logits, seeds, counts, temperature=0.7, top_p=0.95)   # [B] token ids

Sampling is the Gumbel-max trick: ``argmax(logits / T + g)`` with ``g = -log(-log(u))`` is a draw
from ``softmax(logits / T)``. ``u`` is a hash of (row seed, tokens generated, vocabulary index),
computed with integer tensor ops (no generator state, nothing the host must step), so it runs
inside a compiled or CUDA-graphed decoding step and a row that is re-batched mid-response (the
engine re-forms batches) draws exactly what it would have drawn where it was.
"""

from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF
# odd multipliers below 2**31: products of a 32-bit value stay inside int64 on every backend
_K1, _K2, _K3 = 0x7FEB352D, 0x6C8E9CF5, 0x5BD1E995


def _mix(h: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche (xorshift-multiply rounds) on int64 tensors holding values < 2**32."""
    h = h ^ (h >> 16)
    h = (h * _K1) & _M32
    h = h ^ (h >> 15)
    h = (h * _K2) & _M32
    h = h ^ (h >> 16)
    return h


def uniform(seeds: torch.Tensor, counts: torch.Tensor, vocab: int) -> torch.Tensor:
    """[B, vocab] floats in (0, 1), a function of (seed, count, index) only."""
    idx = torch.arange(vocab, device=seeds.device, dtype=torch.int64)
    h = _mix((seeds[:, None] & _M32) ^ ((idx[None, :] * _K3) & _M32))
    h = _mix(h ^ ((counts[:, None] * _K1) & _M32))
    h = _mix(h ^ ((seeds[:, None] >> 32) & _M32))
    return ((h >> 8).to(torch.float32) + 0.5) / float(1 << 24)


def select(
    logits: torch.Tensor,
    seeds: torch.Tensor | None = None,
    counts: torch.Tensor | None = None,
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """The next token of each row of ``logits`` [B, V]: greedy when ``temperature`` is 0, else a
    draw at ``temperature`` from the smallest set of tokens whose probability reaches ``top_p``."""
    logits = logits.float()
    if temperature <= 0:
        return logits.argmax(-1)
    scaled = logits / temperature
    if top_p < 1.0:
        ordered, order = scaled.sort(-1, descending=True)
        before = ordered.softmax(-1).cumsum(-1) - ordered.softmax(-1)  # mass above each token
        drop = torch.zeros_like(scaled, dtype=torch.bool).scatter(-1, order, before >= top_p)
        scaled = scaled.masked_fill(drop, float("-inf"))
    g = -torch.log(-torch.log(uniform(seeds, counts, logits.shape[-1])))
    return (scaled + g).argmax(-1)
