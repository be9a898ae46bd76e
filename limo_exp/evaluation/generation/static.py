"""Static-cache decoding for the hf engine (``eval.hf_decoding=static|compiled``).

A fixed number of batch slots over one KV store (``kv.KVStore``) sized for the call's budget,
the bucket (``cache_bucket``) of the longest prompt plus ``max_new``, capped at the model's
positions. Every live row's tokens end at the same column; a row's position ids count from its own
first column, so the columns it sits in never limit it. Each decoding step writes one token per
row and attends over a window of the store's first columns, the bucket of the columns in use: the
window grows (128, 192, 256, ...) as the longest live row grows and shrinks when it leaves, so a
step costs the tokens in use, not the budget. The step compiles once per window (``compiled``;
CUDA graphs on CUDA); at most ``max_shapes`` compiled windows are kept. Tokens are chosen on the
device (``sampling.select``) and read by the host every ``sync_every`` steps.

Rows end by their own rules only: an end-of-turn token, a stop string, their ``max_new``, or
their own prompt plus response reaching the model's positions. When the columns run out (the
longest rows ended while the others go on), the rows are moved left by the columns no live row
uses (``KVStore.shift``): no row is cut because another was long.

A batch does not wait for its longest response: once ``refill`` of its slots have ended and
requests are waiting, the ended rows leave and the waiting ones are prefilled into their slots,
chunk by chunk (``PREFILL_CHUNK`` tokens), the rows decoding stay where they are (never prefilled
again). Greedy responses are those of ``generate``; a sampled response depends on its seed only
(``sampling``), so re-forming a batch does not change it.
"""

from __future__ import annotations

import logging
import time
import types
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import torch

from limo_exp.evaluation.generation import attention, sampling
from limo_exp.evaluation.generation.kv import DecodeKV, KVStore, PrefillKV, decode_mask, prefill_mask
from limo_exp.evaluation.generation.memory import MIN_CACHE, PREFILL_CHUNK, cache_bucket, fit_batch

__all__ = ["MIN_CACHE", "Row", "StaticDecoder", "Stats", "cache_bucket", "fit_batch"]

log = logging.getLogger(__name__)


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
    segments: int = 0  # admissions: the batch formed or re-formed
    prefill_tokens: int = 0
    decode_steps: int = 0
    shifts: int = 0  # rows moved left (compacted) or right (a longer row joined)
    compile_seconds: float = 0.0  # first calls of each compiled shape (kept out of tokens/s)
    shapes: list = field(default_factory=list)  # (batch, window) compiled, in order
    windows: list = field(default_factory=list)  # attention windows decoded at, in order of first use


class StaticDecoder:
    def __init__(
        self,
        model,
        tok,
        eos: set[int],
        *,
        batch_size: int,
        compiled: bool,
        max_shapes: int = 17,
        sync_every: int = 16,
        refill: float = 0.25,
        prefill_chunk: int = PREFILL_CHUNK,
        stats: Stats | None = None,
    ):
        self.model, self.tok, self.eos = model, tok, eos
        self.batch_size, self.compiled = batch_size, compiled
        self.max_shapes, self.sync_every, self.refill = max_shapes, sync_every, refill
        self.chunk = prefill_chunk
        self.device = next(model.parameters()).device
        self.limit = getattr(model.config, "max_position_embeddings", None)
        if "sliding_attention" in (getattr(model.config, "layer_types", None) or ()):
            raise ValueError("static decoding has no sliding-window attention: set eval.hf_decoding=eager")
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else min(eos)
        attention.install(model)
        self.store: KVStore | None = None
        self._steps: OrderedDict[int, object] = OrderedDict()  # window -> decoding step (LRU)
        self._calls: dict[int, int] = {}  # compiled steps' calls so far, per window
        self.stats = stats if stats is not None else Stats()

    @property
    def kv_bytes(self) -> int:
        return self.store.nbytes if self.store is not None else 0

    def release(self) -> None:
        """Drop the KV store and every compiled step (their memory goes with them)."""
        for window in list(self._steps):
            self._drop(window)
        self.store = None

    # --- the shapes: one decoding step per attention window ------------------------------------
    def _step(self, window: int):
        if window in self._steps:
            self._steps.move_to_end(window)
            return self._steps[window]
        if len(self._steps) >= self.max_shapes:  # bounded: the least recently used goes
            self._drop(next(iter(self._steps)))
        model, store = self.model, self.store

        def step(ids, start, col):
            out = model(
                input_ids=ids,
                position_ids=(col - start).clamp(min=0)[:, None],
                attention_mask=decode_mask(start, col, window),
                use_cache=False,
                limo_kv=DecodeKV(store, window, col),
            )
            return out.logits[:, -1].float()

        self.stats.windows.append(window)
        if self.compiled:
            import torch._dynamo

            torch._dynamo.config.recompile_limit = max(
                torch._dynamo.config.recompile_limit, 4 * self.max_shapes
            )
            # a code object of its own: its compiled entries can be dropped with it (``_drop``)
            step = types.FunctionType(
                step.__code__.replace(), step.__globals__, "step", None, step.__closure__
            )
            mode = "reduce-overhead" if self.device.type == "cuda" else None  # CUDA graphs
            step = torch.compile(step, mode=mode, dynamic=False)
            self.stats.shapes.append((self.batch_size, window))
        self._steps[window] = step
        return step

    def _drop(self, window: int) -> None:
        step = self._steps.pop(window)
        self._calls.pop(window, None)
        inner = getattr(step, "_torchdynamo_orig_callable", None)
        if inner is not None:
            from torch._dynamo.eval_frame import reset_code

            reset_code(inner.__code__)

    # --- the loop -------------------------------------------------------------------------------
    def run(self, rows: list[Row]) -> None:
        """Decode every row to its end (fills ``out`` and ``finish``), longest prompt first."""
        for r in rows:
            if self.limit and len(r.prompt) + len(r.out) >= self.limit:
                raise ValueError(
                    f"a prompt of {len(r.prompt) + len(r.out)} tokens fills the model's {self.limit} positions"
                )
        length = cache_bucket(max(len(r.prompt) + r.max_new for r in rows), self.limit)
        if self.store is None or self.store.length < length:
            self.release()
            self.store = KVStore(self.model, self.batch_size, length)
        b, dev = self.batch_size, self.device
        self.slots: list[Row | None] = [None] * b
        self.start, self.used = [0] * b, 0
        self.nxt = torch.full((b,), self.pad, dtype=torch.long, device=dev)
        self.seeds = torch.zeros(b, dtype=torch.long, device=dev)
        self.counts = torch.zeros(b, dtype=torch.long, device=dev)
        self.col = torch.zeros(1, dtype=torch.long, device=dev)
        self.start_t = torch.zeros(b, dtype=torch.long, device=dev)
        first = rows[0]
        self.pick = {"temperature": first.temperature, "top_p": first.top_p}
        waiting = deque(sorted(rows, key=lambda r: -(len(r.prompt) + len(r.out))))
        with torch.no_grad():  # not inference_mode: the store is reused across calls
            while self._admit(waiting):
                self._decode(waiting)

    def _live(self) -> list[int]:
        return [i for i, r in enumerate(self.slots) if r is not None and r.finish is None]

    def _realign(self, used: int, live: list[int]) -> None:
        """Move the live rows so that they end at column ``used``; empty slots start there."""
        if live and used != self.used:
            self.store.shift(used - self.used, self.used)
            self.stats.shifts += 1
        for i in range(self.batch_size):
            self.start[i] = self.start[i] + used - self.used if i in live else used
        self.used = used

    def _admit(self, waiting: deque) -> bool:
        """Ended rows leave; waiting rows are prefilled into the free slots. False when done."""
        while True:
            live = self._live()
            free = [i for i in range(self.batch_size) if i not in live]
            new = []
            while free and waiting:
                i = free.pop(0)
                self.slots[i] = waiting.popleft()
                new.append(i)
            for i in free:
                self.slots[i] = None
            if not new:
                break
            ids = {i: self.slots[i].prompt + self.slots[i].out for i in new}
            self._realign(
                max([self.used - self.start[i] for i in live] + [len(x) for x in ids.values()]), live
            )
            self.stats.segments += 1
            for i, x in ids.items():
                self._prefill(i, x)
            self._accept([self.slots[i] for i in new], [[t] for t in self.nxt[new].tolist()])
            if all(self.slots[i].finish is None for i in new) or not waiting:
                break
        self.start_t.copy_(torch.tensor(self.start))
        self.col.fill_(self.used)
        return bool(self._live())

    def _prefill(self, i: int, ids: list[int]) -> None:
        """Row ``i``'s tokens into columns [used - len, used) in chunks; its first token picked."""
        r, dev, first = self.slots[i], self.device, self.used - len(ids)
        self.start[i] = first
        self.stats.prefill_tokens += len(ids)
        for a in range(0, len(ids), self.chunk):
            q = min(self.chunk, len(ids) - a)
            logits = self.model(
                input_ids=torch.tensor([ids[a : a + q]], device=dev),
                position_ids=torch.arange(a, a + q, device=dev)[None],
                attention_mask=prefill_mask(first, first + a, q, dev, self.store.k[0].dtype),
                use_cache=False,
                logits_to_keep=1,
                limo_kv=PrefillKV(self.store, i, first, first + a),
            ).logits[:, -1]
        self.seeds[i], self.counts[i] = r.seed, len(r.out)
        self.nxt[i] = sampling.select(logits, self.seeds[i : i + 1], self.counts[i : i + 1], **self.pick)[0]
        self.counts[i] += 1

    def _decode(self, waiting: deque) -> None:
        """Steps until every row has ended, or ``refill`` of the slots have and requests wait."""
        b, length = self.batch_size, self.store.length
        buf = torch.empty(b, self.sync_every, dtype=torch.long, device=self.device)
        window, t = cache_bucket(self.used + 1, length), 0
        while True:
            if self.used == window:  # the longest row reached the window's end
                if window < length:
                    window = cache_bucket(window + 1, length)
                else:  # the store's end: move every row left by the columns none uses
                    self._accept(self.slots, buf[:, :t].tolist())
                    t, live = 0, self._live()
                    if not live:
                        return
                    if min(self.start[i] for i in live) == 0:  # a live row fills the store: cannot be
                        raise RuntimeError(f"a row outgrew the KV store of {length} columns")
                    self._realign(self.used - min(self.start[i] for i in live), live)
                    self.start_t.copy_(torch.tensor(self.start))
                    self.col.fill_(self.used)
                    window = cache_bucket(self.used + 1, length)
            logits = self._timed_step(window, self.nxt[:, None], self.start_t, self.col)
            self.nxt = sampling.select(logits, self.seeds, self.counts, **self.pick)
            buf[:, t] = self.nxt
            self.counts += 1
            self.col += 1
            self.used, t = self.used + 1, t + 1
            self.stats.decode_steps += 1
            if t == self.sync_every:
                self._accept(self.slots, buf.tolist())
                t, live = 0, self._live()
                if not live or (waiting and b - len(live) >= max(1, self.refill * b)):
                    return

    def _timed_step(self, window, *args):
        """A decoding step; the first two calls of a compiled shape (compiling it, then recording
        its CUDA graph) are timed apart, so that compile time stays out of tokens/s."""
        step = self._step(window)
        calls = self._calls.get(window, 2 if not self.compiled else 0)
        if calls >= 2:
            return step(*args)
        started = time.perf_counter()
        out = step(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        self.stats.compile_seconds += seconds
        self._calls[window] = calls + 1
        if calls == 0:
            log.info(
                "decoding step compiled for batch %d x window %d in %.1f s", self.batch_size, window, seconds
            )
        return out

    def _accept(self, rows: list[Row | None], tokens: list[list[int]]) -> None:
        """The host's view of the tokens chosen since the last read: each row ends at an end-of-turn
        token (not kept), a stop string (kept: the caller cuts the text), its ``max_new``, or its
        prompt plus response filling the model's positions."""
        for r, new in zip(rows, tokens):
            for t in new:
                if r is None or r.finish is not None:
                    break
                if t in self.eos:
                    r.finish = "stop"
                    break
                r.out.append(t)
                if r.stop and self._stopped(r):
                    r.finish = "stop"
                elif len(r.out) >= r.max_new or (self.limit and len(r.prompt) + len(r.out) >= self.limit):
                    r.finish = "length"

    def _stopped(self, r: Row) -> bool:
        tail = self.tok.decode(r.out[-(max(len(s) for s in r.stop) + 2) :], skip_special_tokens=True)
        return any(s and s in tail for s in r.stop)
