"""Static-cache decoding for the hf engine (``eval.hf_decoding=static|compiled``).

One loop over a fixed number of batch slots and one static KV cache per call, its length the
bucket (``cache_bucket``) of the longest prompt plus ``max_new`` of the call. A segment: the rows
in the slots are prefilled (left-padded) into the cache, then decoded a token
at a time with every shape fixed -- the batch, the cache, the attention mask -- so that the
decoding step compiles once per (batch, cache length) and, on CUDA, replays as a CUDA graph
(``compiled``). Tokens are chosen on the device (``sampling.select``) and read by the host every
``sync_every`` steps, not every step.

A batch does not wait for its longest response: once ``refill`` of its rows have ended and
requests are waiting, the segment stops, finished rows leave, waiting requests take their slots
and the unfinished rows continue from their prompt and the tokens generated so far (prefilled
again: prefill is cheap next to decoding); the cache holds any row to its ``max_new``, so the
shape does not change. Greedy responses are those of ``generate``; a sampled response depends on
its seed only (``sampling``), so re-forming a batch does not change it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from limo_exp.evaluation.generation import sampling

log = logging.getLogger(__name__)

MIN_CACHE = 128


def cache_bucket(n: int, limit: int | None = None) -> int:
    """The cache length for ``n`` positions: the next of 128, 192, 256, 384, 512, 768, ... (two
    per octave, so at most a third is unused), capped at ``limit`` (the model's positions)."""
    size = MIN_CACHE
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return min(size, limit) if limit else size


def fit_batch(model, length: int, cap: int, headroom: float = 0.8) -> int:
    """The largest power-of-two batch (at most ``cap``) whose static caches of ``length``
    positions, plus one row's prefill activations, fit in ``headroom`` of the free GPU memory."""
    c = model.config
    elem = next(model.parameters()).element_size()
    heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv = 2 * c.num_hidden_layers * heads * head_dim * length * elem
    prefill = length * (4 * c.hidden_size + 2 * c.intermediate_size) * elem + 2 * c.vocab_size * 4
    free, _ = torch.cuda.mem_get_info()
    fits = int(headroom * free // (kv + prefill))
    batch = 1
    while batch * 2 <= min(fits, cap):
        batch *= 2
    return batch


@dataclass
class Row:
    """One request in the loop: its prompt ids, what it has generated, and how it ended."""

    prompt: list[int]
    max_new: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    out: list[int] = field(default_factory=list)
    finish: str | None = None  # stop | length, once ended


@dataclass
class Stats:
    segments: int = 0
    prefill_tokens: int = 0
    decode_steps: int = 0
    compile_seconds: float = 0.0  # first calls of each compiled shape (kept out of tokens/s)
    shapes: list = field(default_factory=list)  # (batch, cache length) compiled, in order


class StaticDecoder:
    def __init__(
        self,
        model,
        tok,
        eos: set[int],
        *,
        batch_size: int,
        compiled: bool,
        max_shapes: int = 8,
        sync_every: int = 16,
        refill: float = 0.5,
        stats: Stats | None = None,
    ):
        self.model, self.tok, self.eos = model, tok, eos
        self.batch_size, self.compiled = batch_size, compiled
        self.max_shapes, self.sync_every, self.refill = max_shapes, sync_every, refill
        self.device = next(model.parameters()).device
        self.limit = getattr(model.config, "max_position_embeddings", None)
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else min(eos)
        self._shapes: dict[tuple[int, int], tuple] = {}  # (B, C) -> (cache, step)
        self._calls: dict[tuple[int, int], int] = {}  # compiled steps' calls so far, per shape
        self.stats = stats if stats is not None else Stats()

    # --- the shapes: one static cache and one decoding step per (batch, cache length) ---------
    def _shape(self, batch: int, length: int):
        key = (batch, length)
        if key in self._shapes:
            return self._shapes[key]
        from transformers import StaticCache

        if len(self._shapes) >= self.max_shapes:  # bounded: the oldest shape goes
            old = next(iter(self._shapes))
            del self._shapes[old]
            self._calls.pop(old, None)
        cache = StaticCache(config=self.model.config, max_cache_len=length)
        model = self.model

        def step(ids, pos, cpos, mask):
            out = model(
                input_ids=ids,
                position_ids=pos,
                cache_position=cpos,
                attention_mask=mask,
                past_key_values=cache,
                use_cache=True,
            )
            return out.logits[:, -1].float()

        if self.compiled:
            import torch._dynamo

            torch._dynamo.config.recompile_limit = max(
                torch._dynamo.config.recompile_limit, 4 * self.max_shapes
            )
            mode = "reduce-overhead" if self.device.type == "cuda" else None  # CUDA graphs
            step = torch.compile(step, mode=mode, dynamic=False)
            self.stats.shapes.append(key)
        self._shapes[key] = (cache, step)
        return cache, step

    # --- the loop -------------------------------------------------------------------------
    def run(self, rows: list[Row]) -> None:
        """Decode every row to its end (fills ``out`` and ``finish``), longest prompt first."""
        # one cache length for the call: every row, however re-batched, fits it to its max_new
        length = cache_bucket(max(len(r.prompt) + r.max_new for r in rows), self.limit)
        waiting = deque(sorted(rows, key=lambda r: -len(r.prompt)))
        slots: list[Row] = []
        while waiting or slots:
            while waiting and len(slots) < self.batch_size:
                slots.append(waiting.popleft())
            self._segment(slots, length, waiting_requests=bool(waiting))
            slots = [r for r in slots if r.finish is None]

    def _segment(self, rows: list[Row], length: int, waiting_requests: bool) -> None:
        b, dev = self.batch_size, self.device
        ids = [r.prompt + r.out for r in rows]
        width = max(len(x) for x in ids)
        need = max(r.max_new - len(r.out) for r in rows)
        if length <= width:
            raise ValueError(f"a prompt of {width} tokens fills the model's {self.limit} positions")
        steps = min(length - width, need)
        cache, step = self._shape(b, length)
        cache.reset()
        filled = ids + [ids[0]] * (b - len(ids))  # empty slots repeat the first row: shapes stay fixed
        real = torch.zeros(b, length, dtype=torch.long)
        inputs = torch.full((b, width), self.pad, dtype=torch.long)
        for i, x in enumerate(filled):
            inputs[i, width - len(x) :] = torch.tensor(x)
            real[i, width - len(x) :] = 1
        real[:, width:] = 1  # positions the decoding will write; the causal mask hides the future
        inputs, real = inputs.to(dev), real.to(dev)
        pos = (real[:, :width].cumsum(-1) - 1).clamp(min=0)
        first = rows[0]
        pick_kw = {"temperature": first.temperature, "top_p": first.top_p}
        seeds = torch.tensor([r.seed for r in rows] + [0] * (b - len(rows)), device=dev)
        counts = torch.tensor([len(r.out) for r in rows] + [0] * (b - len(rows)), device=dev)
        self.stats.segments += 1
        self.stats.prefill_tokens += sum(len(x) for x in ids)
        with torch.no_grad():  # not inference_mode: the cache is reused across segments
            logits = self.model(
                input_ids=inputs,
                position_ids=pos,
                cache_position=torch.arange(width, device=dev),
                attention_mask=real,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
            nxt = sampling.select(logits, seeds, counts, **pick_kw)
            buf = torch.empty(b, steps, dtype=torch.long, device=dev)
            buf[:, 0] = nxt
            base = real[:, :width].sum(-1, keepdim=True)  # each row's next position id
            cpos = torch.full((1,), width, dtype=torch.long, device=dev)
            read, t = 0, 1
            while True:
                if t - read >= self.sync_every or t == steps:
                    self._accept(rows, buf[:, read:t].tolist())
                    read = t
                    ended = sum(r.finish is not None for r in rows)
                    if t == steps and length == self.limit:  # the model's positions are used up
                        for r in rows:
                            r.finish = r.finish or "length"
                    if ended == len(rows) or t == steps:
                        return
                    if waiting_requests and ended >= self.refill * b:
                        return  # re-form: finished rows leave, waiting requests come in
                nxt = self._timed_step(step, (b, length), nxt[:, None], base + (cpos - width), cpos, real)
                nxt = sampling.select(nxt, seeds, counts + t, **pick_kw)
                buf[:, t] = nxt
                cpos += 1
                t += 1
                self.stats.decode_steps += 1

    def _timed_step(self, step, key, *args):
        """A decoding step; the first two calls of a compiled shape (compiling it, then recording
        its CUDA graph) are timed apart, so that compile time stays out of tokens/s."""
        calls = self._calls.get(key, 2 if not self.compiled else 0)
        if calls >= 2:
            return step(*args)
        started = time.perf_counter()
        out = step(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        self.stats.compile_seconds += seconds
        self._calls[key] = calls + 1
        if calls == 0:
            log.info("decoding step compiled for batch %d x cache %d in %.1f s", key[0], key[1], seconds)
        return out

    def _accept(self, rows: list[Row], tokens: list[list[int]]) -> None:
        """The host's view of the tokens chosen since the last read: each row ends at an end-of-turn
        token (not kept), a stop string (kept: the caller cuts the text) or its ``max_new``."""
        for r, new in zip(rows, tokens):
            for t in new:
                if r.finish is not None:
                    break
                if t in self.eos:
                    r.finish = "stop"
                    break
                r.out.append(t)
                if r.stop and self._stopped(r):
                    r.finish = "stop"
                elif len(r.out) >= r.max_new:
                    r.finish = "length"

    def _stopped(self, r: Row) -> bool:
        tail = self.tok.decode(r.out[-(max(len(s) for s in r.stop) + 2) :], skip_special_tokens=True)
        return any(s and s in tail for s in r.stop)
