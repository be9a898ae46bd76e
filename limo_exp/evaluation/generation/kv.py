"""The static decoding's KV store and the two views the attention writes and reads through.

``KVStore``: per layer, K and V of [batch, KV heads, length, head dim], allocated once for the
call's budget (the batch is fitted to it) at fixed addresses (CUDA graphs replay on them). Every
live row's tokens are contiguous and end at the same column, ``used``; a row's first column is its
``start``; its position ids count from 0 at its start, whatever the column.

- ``DecodeKV``: one token per row written at column ``col``, attention over the first ``window``
  columns only (a bucket of ``used``: decoding costs what is in use, not the budget).
- ``PrefillKV``: a chunk of one row's tokens written at columns [at, at + q), attention over its
  columns [first, at + q): prompts, and rows that continue after an out-of-memory, are prefilled
  chunk by chunk into their own slot, the other rows untouched.

``shift`` moves every row's columns left (compacting: the longest rows ended) or right (a row
that joins is longer than the rows decoding) by the same number of columns.
"""

from __future__ import annotations

import torch

from limo_exp.evaluation.generation.memory import kv_geometry


class KVStore:
    def __init__(self, model, batch: int, length: int):
        param = next(model.parameters())
        layers, kv_heads, head_dim, self.groups = kv_geometry(model.config)
        shape = (batch, kv_heads, length, head_dim)
        self.k = [torch.zeros(shape, dtype=param.dtype, device=param.device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=param.dtype, device=param.device) for _ in range(layers)]
        for t in self.k + self.v:  # fixed addresses: a CUDA graph reads and writes them in place
            torch._dynamo.mark_static_address(t)
        self.batch, self.length = batch, length

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def shift(self, delta: int, used: int) -> None:
        """Move columns [0, used) by ``delta`` (negative: left), a layer at a time."""
        if delta == 0 or used == 0:
            return
        lo = max(0, -delta)
        for t in self.k + self.v:
            t[:, :, lo + delta : used + delta] = t[:, :, lo:used].clone()


class DecodeKV:
    """One token per row at column ``col`` ([1] tensor), attention over columns [0, window)."""

    def __init__(self, store: KVStore, window: int, col: torch.Tensor):
        self.store, self.window, self.col = store, window, col

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor):
        k = self.store.k[layer][:, :, : self.window]
        v = self.store.v[layer][:, :, : self.window]
        k.index_copy_(2, self.col, key)
        v.index_copy_(2, self.col, value)
        return k, v


class PrefillKV:
    """One row's chunk written at columns [at, at + q) of slot ``row``, read from ``first``."""

    def __init__(self, store: KVStore, row: int, first: int, at: int):
        self.store, self.row, self.first, self.at = store, row, first, at

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor):
        end = self.at + key.shape[2]
        k, v = self.store.k[layer], self.store.v[layer]
        k[self.row, :, self.at : end] = key[0]
        v[self.row, :, self.at : end] = value[0]
        return k[self.row : self.row + 1, :, self.first : end], v[
            self.row : self.row + 1, :, self.first : end
        ]


def prefill_mask(first: int, at: int, q: int, device, dtype=torch.float32) -> torch.Tensor:
    """[1, 1, q, at + q - first] additive mask (0 or -inf; SDPA's kernels turn a bool one into
    this anyway): query i (column at + i) sees columns first .. at + i."""
    keys = torch.arange(first, at + q, device=device)
    queries = torch.arange(at, at + q, device=device)
    hidden = keys[None, :] > queries[:, None]
    return torch.zeros(hidden.shape, dtype=dtype, device=device).masked_fill_(hidden, float("-inf"))[
        None, None
    ]


def decode_mask(start: torch.Tensor, col: torch.Tensor, window: int) -> torch.Tensor:
    """[b, 1, 1, window] bool: row r sees its columns start[r] .. col (and col itself always: an
    empty slot attends to what it writes, never to nothing)."""
    cols = torch.arange(window, device=start.device)
    seen = ((cols[None, :] >= start[:, None]) & (cols[None, :] <= col)) | (cols[None, :] == col)
    return seen[:, None, None, :]
