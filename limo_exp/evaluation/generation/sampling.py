"""Choosing the next token on the device, one row at a time in effect: greedy is the argmax;
sampling draws from each row's own counter-based noise, so a sample depends on its prompt, its
seed and how many tokens it has generated, never on the rows it is batched with.

    pick = select(logits, seeds, counts, temperature=0.7, top_p=0.95)   # [B] token ids

Sampling is the Gumbel-max trick: ``argmax(logits / T + g)`` with ``g = -log(-log(u))`` is a draw
from ``softmax(logits / T)``. ``u`` comes from a 32-bit hash of (row seed, tokens generated,
vocabulary index), computed with integer tensor ops (no generator state, nothing the host must
step), so it runs inside a compiled or CUDA-graphed decoding step and a row that is re-batched
mid-response (the engine re-forms batches) draws exactly what it would have drawn where it was.

The noise is finite for every one of the 2**32 hash values (``gumbel``: ``u = (h + 0.5) / 2**32``
is never formed in float32, where it would round to 1.0 near the top; ``-log(u)`` is taken from
whichever of ``u`` and ``1 - u`` is small, both exact), and tokens outside the ``top_p`` nucleus
are set to ``-inf`` after the noise is added, so they cannot win whatever the noise. A row seed is
any int64 (``mix_seed`` folds any integers into one); all 64 bits reach the noise.
"""

from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF
_M64 = (1 << 64) - 1
# odd multipliers below 2**31: products of a 32-bit value stay inside int64 on every backend
_K1, _K2, _K3 = 0x7FEB352D, 0x6C8E9CF5, 0x5BD1E995
_SALT1, _SALT2 = 0x3C6EF372, 0x1B873593  # seed 0 is no fixed point of the keys


def _mix(h: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche (xorshift-multiply rounds) on int64 tensors holding values < 2**32; a
    bijection of [0, 2**32)."""
    h = h ^ (h >> 16)
    h = (h * _K1) & _M32
    h = h ^ (h >> 15)
    h = (h * _K2) & _M32
    h = h ^ (h >> 16)
    return h


def bits(seeds: torch.Tensor, counts: torch.Tensor, vocab: int) -> torch.Tensor:
    """[B, vocab] int64 hash values in [0, 2**32), a function of (seed, count, index) only.

    Each row's two 32-bit keys (all 64 bits of its seed, then its count) are mixed on [B] first;
    the vocabulary index then goes through two rounds with them, so a row's values at one step
    are distinct (a bijection of the index) and keys differing in any bit give unrelated rows."""
    seeds, counts = seeds.to(torch.int64), counts.to(torch.int64)
    lo, hi, step = seeds & _M32, (seeds >> 32) & _M32, counts & _M32
    k1 = _mix(_mix(_mix(hi ^ _SALT1) ^ lo) ^ ((step * _K3) & _M32))[:, None]
    k2 = _mix(_mix(_mix(lo ^ _SALT2) ^ hi) ^ ((step * _K1) & _M32))[:, None]
    idx = (torch.arange(vocab, device=seeds.device, dtype=torch.int64) * _K3) & _M32
    return _mix(_mix(k1 ^ idx[None, :]) ^ k2)


def gumbel(h: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise ``-log(-log(u))`` for hash values ``h`` in [0, 2**32), ``u = (h + 0.5) /
    2**32``, in float32 and finite for every ``h`` (from -3.13 at h = 0 to 22.87 at 2**32 - 1).

    ``-log(u)`` comes from the smaller of ``u`` and ``1 - u`` (``v``, in [2**-33, 0.5], exact to
    float32's precision): ``-log(v)`` below the middle, ``-log1p(-v)`` above it, so neither end
    rounds to 0 or 1 and the tail where draws are won keeps 32 bits of resolution."""
    upper = h >= (1 << 31)
    v = (torch.where(upper, _M32 - h, h).to(torch.float32) + 0.5) * (2.0**-32)
    e = torch.where(upper, -torch.log1p(-v), -torch.log(v))  # -log(u) > 0: an Exponential(1)
    return -torch.log(e)


def noise(seeds: torch.Tensor, counts: torch.Tensor, vocab: int) -> torch.Tensor:
    """[B, vocab] float32 Gumbel noise of each row's (seed, count)."""
    return gumbel(bits(seeds, counts, vocab))


def mix_seed(*parts: int) -> int:
    """One seed in [0, 2**63) from integers in [-2**63, 2**64) (a run's seed, a request's seed, a
    batch number...): splitmix64's finaliser over the parts in order, exact in Python integers. It
    fits an int64 tensor, ``torch.manual_seed`` and a per-request vLLM seed; distinct parts give
    distinct seeds but for a 2**-63 chance."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        if not -(1 << 63) <= int(p) <= _M64:
            raise ValueError(f"a seed must be a 64-bit integer, got {p}")
        h = (h ^ (int(p) & _M64)) * 0xBF58476D1CE4E5B9 & _M64
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _M64
        h ^= h >> 29
    return h >> 1


def select(
    logits: torch.Tensor,
    seeds: torch.Tensor | None = None,
    counts: torch.Tensor | None = None,
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """The next token of each row of ``logits`` [B, V]: greedy when ``temperature`` is 0, else a
    draw at ``temperature`` from the smallest set of tokens whose probability reaches ``top_p``
    (the most likely token is always in it)."""
    logits = logits.float()
    if temperature <= 0:
        return logits.argmax(-1)
    scaled = logits / temperature
    g = noise(seeds, counts, logits.shape[-1])
    if top_p < 1.0:
        ordered, order = scaled.sort(-1, descending=True)
        probs = ordered.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass above each token
        out = before >= top_p
        out[:, 0] = False
        drop = torch.zeros_like(scaled, dtype=torch.bool).scatter(-1, order, out)
        return (scaled + g).masked_fill(drop, float("-inf")).argmax(-1)
    return (scaled + g).argmax(-1)
