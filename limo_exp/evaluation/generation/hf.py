"""The ``hf`` engine: transformers on the GPU (or CPU) of this process.

    engine = HFEngine(path, EngineOptions(dtype="bfloat16", device="cuda"))   # compiled decoding
    outs = engine.generate([Gen(prompt, max_new=512, stop=("</think>",))])

``eval.hf_decoding``: ``eager`` is transformers' ``generate`` on left-padded batches grouped by
settings; ``static`` is ``static.StaticDecoder`` (static KV cache, fixed shapes, batches
re-formed as rows end, per-row ``max_new`` and stop strings, attention over the columns in
use); ``compiled`` is the same with its decoding step compiled (CUDA graphs on CUDA); ``auto``
is ``compiled`` on CUDA, ``eager`` on
the CPU. Greedy responses are the same whichever runs; sampled ones differ between ``eager``
(torch's generator, seeded per batch: a sample depends on its batch) and the static loop (each
row's own seed: a sample depends on its prompt, seed and settings only, as with vLLM).
"""

from __future__ import annotations

import logging

from limo_exp.evaluation.generation.engines import AUTO_BATCH, EngineOptions, Gen, Out, hf_decoding, response
from limo_exp.evaluation.generation.memory import cache_bucket, fit_batch, is_out_of_memory
from limo_exp.evaluation.generation.sampling import mix_seed
from limo_exp.evaluation.generation.static import Row, StaticDecoder, Stats

log = logging.getLogger(__name__)

STATIC_CPU_BATCH = 8  # batch_size=auto for the static loop off CUDA (on CUDA: fitted to memory)


def eval_attention(requested: str) -> tuple[str, str]:
    """The attention generation loads the model with: the configured one, but ``auto`` (and the
    training-only ``limo_varlen``) give ``sdpa``, which the static-cache decoding is built on."""
    if requested in ("auto", "limo_varlen"):
        return "sdpa", f"model.attn_implementation={requested}: sdpa for generation"
    return requested, "as configured"


class HFEngine:
    """transformers on batches of prompts of similar length: ``generate`` on left-padded batches
    (``eager``), or the static-cache loop of ``decoding`` (``static``; ``compiled``: its decoding
    step compiled, CUDA graphs on CUDA)."""

    name = "hf"

    def __init__(self, model_path: str, opts: EngineOptions):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = opts.device
        self.decoding = hf_decoding(opts.decoding, opts.device)
        kw = {"revision": opts.revision, "trust_remote_code": opts.trust_remote_code}
        self.tok = AutoTokenizer.from_pretrained(model_path, **kw)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.attn, why = eval_attention(opts.attn_implementation)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=getattr(torch, opts.dtype), attn_implementation=self.attn, **kw
        ).to(self.device)
        self.model.eval()
        log.info("hf engine: %s decoding, attention %s (%s)", self.decoding, self.attn, why)
        self.opts = opts
        if self.decoding == "eager":
            auto = AUTO_BATCH[self.device]
        else:  # on CUDA: the cap, lowered to what free memory holds for each call's cache (fit_batch)
            auto = opts.max_batch_size if self.device == "cuda" else STATIC_CPU_BATCH
        self.batch_size = auto if opts.batch_size == "auto" else int(opts.batch_size)
        self.seed = opts.seed
        self._batches = 0
        self._decoder: StaticDecoder | None = None
        self._oom: list[tuple[int, int]] = []  # (cache length, batch after halving) per out-of-memory
        self._length = 0  # the cache length of the call decoding now
        self.stats = Stats()

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return {i for i in ids + [self.tok.eos_token_id] if i is not None}

    # --- encode / generate / decode ---------------------------------------------------------
    def _encode(self, prompts: list[str]) -> list[list[int]]:
        return self.tok(prompts, add_special_tokens=False)["input_ids"]

    def _out(self, ids: list[int], stop: tuple[str, ...], ended: bool) -> Out:
        return response(self.tok, ids, stop, ended)

    def generate(self, reqs: list[Gen]) -> list[Out]:
        if self.decoding == "eager":
            return self._generate_eager(reqs)
        return self._generate_static(reqs)

    def _generate_static(self, reqs: list[Gen]) -> list[Out]:
        """Requests of the same sampling settings through the static-cache loop (stop strings and
        ``max_new`` are per row); CUDA out-of-memory halves the batch and goes on."""
        ids = self._encode([r.prompt for r in reqs])
        rows = [
            Row(x, r.max_new, r.stop, r.temperature, r.top_p, mix_seed(self.seed, r.seed or 0))
            for x, r in zip(ids, reqs)
        ]
        groups: dict[tuple, list[Row]] = {}
        for row in rows:
            groups.setdefault((row.temperature, row.top_p), []).append(row)
        for group in groups.values():
            while True:
                todo = [r for r in group if r.finish is None]
                if not todo:
                    break
                try:
                    self._decoder_for(todo).run(todo)
                except Exception as e:  # also an OOM inside compilation (BackendCompilerFailed)
                    if not is_out_of_memory(e):
                        raise
                    self._out_of_memory(e)
        return [self._out(r.out, r.stop, r.finish == "stop") for r in rows]

    def _decoder_for(self, rows: list[Row]) -> StaticDecoder:
        """The decoder for ``rows``: with ``eval.batch_size=auto`` on CUDA, the batch that free
        memory holds for their cache (it grows back when a call needs less), at most the batch
        an out-of-memory at this cache length or below left."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        length = cache_bucket(max(len(r.prompt) + r.max_new for r in rows), limit)
        self._length = length
        if self.opts.batch_size == "auto" and self.device == "cuda":
            old = self._decoder.kv_bytes if self._decoder is not None else 0
            cap = min([self.opts.max_batch_size] + [b for n, b in self._oom if n <= length])
            self.batch_size = fit_batch(self.model, length, cap, reclaimable=old)
        if self._decoder is None or self._decoder.batch_size != self.batch_size:
            if self._decoder is not None:
                self._decoder.release()
            compiled = self.decoding == "compiled"
            self._decoder = StaticDecoder(
                self.model,
                self.tok,
                self._eos_ids(),
                batch_size=self.batch_size,
                compiled=compiled,
                stats=self.stats,
            )
        return self._decoder

    def _out_of_memory(self, e) -> None:
        import torch

        if self.batch_size == 1:
            raise RuntimeError(
                f"CUDA out of memory decoding one sequence ({e}): lower eval.max_gen_toks (or "
                "distill.max_gen_toks); responses already stored are kept"
            ) from e
        self.batch_size //= 2
        self._oom.append((self._length, self.batch_size))
        if self._decoder is not None:
            self._decoder.release()
        self._decoder = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.warning(
            "out of memory in generation: batch size %d (set eval.batch_size to fix it)", self.batch_size
        )

    # --- eager: transformers' generate ------------------------------------------------------
    def _run_eager(self, batch: list[Gen]) -> list[Out]:
        import torch

        g = batch[0]
        enc = self.tok([b.prompt for b in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.device)
        kw = {"max_new_tokens": g.max_new, "pad_token_id": self.tok.pad_token_id}
        if g.temperature > 0:
            # top_k=0: the protocol's temperature and top_p only, not the model's top_k (50 unless
            # its generation_config says otherwise), as the static loop and vLLM sample
            kw |= {"do_sample": True, "temperature": g.temperature, "top_p": g.top_p, "top_k": 0}
        else:
            kw |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if g.stop:
            kw |= {"stop_strings": list(g.stop), "tokenizer": self.tok}
        torch.manual_seed(mix_seed(self.seed, self._batches))  # sampled runs: reproducible per batch
        self._batches += 1
        with torch.inference_mode():
            out = self.model.generate(**enc, **kw)
        # a row that ended before the batch is filled with the pad token: that ends it too (counting
        # those pads as generated tokens was a bug where pad is not the end-of-turn token)
        eos = self._eos_ids() | {self.tok.pad_token_id}
        results = []
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            end = next((i for i, t in enumerate(row) if t in eos), None)
            results.append(self._out(row if end is None else row[:end], g.stop, end is not None))
        return results

    def _generate_eager(self, reqs: list[Gen]) -> list[Out]:
        """Requests grouped by settings, longest prompt first, in batches; CUDA out-of-memory
        halves the batch and retries."""
        import torch

        order = sorted(
            range(len(reqs)),
            key=lambda i: (
                reqs[i].max_new,
                reqs[i].stop,
                reqs[i].temperature,
                reqs[i].top_p,
                -len(reqs[i].prompt),
            ),
        )
        outs: list[Out | None] = [None] * len(reqs)
        i = 0
        while i < len(order):
            first = reqs[order[i]]
            same = [
                j
                for j in order[i : i + self.batch_size]
                if (reqs[j].max_new, reqs[j].stop, reqs[j].temperature, reqs[j].top_p)
                == (first.max_new, first.stop, first.temperature, first.top_p)
            ]
            try:
                for j, o in zip(same, self._run_eager([reqs[j] for j in same])):
                    outs[j] = o
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size //= 2
                torch.cuda.empty_cache()
                log.warning("out of memory in generation: batch size %d", self.batch_size)
                continue
            i += len(same)
        return outs  # type: ignore[return-value]
