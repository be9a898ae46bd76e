"""Generation engines behind the evaluation wrapper: transformers (``hf``, batched, prompts sorted
by length) and vLLM. Both take templated prompts and return the text, the number of generated
tokens and how generation ended, so that budgets and truncation are counted in real tokens.

    engine = make_engine("hf", path, dtype="bfloat16", batch_size="auto", ...)
    outs = engine.generate([Gen(prompt, max_new=512, stop=["</think>"])])
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

AUTO_BATCH = {"cuda": 64, "cpu": 1}  # batch_size=auto starts here; CUDA halves on out-of-memory


@dataclass(frozen=True)
class Gen:
    prompt: str
    max_new: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None  # the sample's own seed (from its store key): vLLM draws it from this
    # seed alone, whatever it is batched with; hf seeds each batch (sampled runs: reproducible, but
    # a sample depends on its batch)


def sample_seed(key: str) -> int:
    """A request's sampling seed, from its response-store key (model, prompt, settings, sample)."""
    import hashlib

    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


@dataclass
class Out:
    text: str
    n_tokens: int
    finish: str  # stop (end of turn or a stop string) | length (max_new reached)


@dataclass
class Timing:
    seconds: float = 0.0
    tokens: int = 0
    per_task: dict[str, list[float]] = field(default_factory=dict)  # task -> [seconds, tokens]


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stop if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


class HFEngine:
    """transformers ``generate`` on left-padded batches of prompts of similar length."""

    name = "hf"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str,
        batch_size,
        seed: int,
        device: str = "cpu",
        revision=None,
        trust_remote_code=False,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device
        kw = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.tok = AutoTokenizer.from_pretrained(model_path, **kw)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=getattr(torch, dtype), attn_implementation="sdpa", **kw
        ).to(self.device)
        self.model.eval()
        self.batch_size = AUTO_BATCH[self.device] if batch_size == "auto" else int(batch_size)
        self.seed = seed
        self._batches = 0

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return {i for i in ids + [self.tok.eos_token_id] if i is not None}

    def _run(self, batch: list[Gen]) -> list[Out]:
        import torch

        g = batch[0]
        enc = self.tok([b.prompt for b in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.device)
        kw = {"max_new_tokens": g.max_new, "pad_token_id": self.tok.pad_token_id}
        if g.temperature > 0:
            kw |= {"do_sample": True, "temperature": g.temperature, "top_p": g.top_p}
        else:
            kw |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if g.stop:
            kw |= {"stop_strings": list(g.stop), "tokenizer": self.tok}
        torch.manual_seed(self.seed * 1_000_003 + self._batches)  # sampled runs: reproducible per batch
        self._batches += 1
        with torch.inference_mode():
            out = self.model.generate(**enc, **kw)
        eos = self._eos_ids()
        results = []
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            end = next((i for i, t in enumerate(row) if t in eos), None)
            ids = row if end is None else row[:end]
            text, stopped = _cut_at_stop(self.tok.decode(ids, skip_special_tokens=True), g.stop)
            finish = "stop" if end is not None or stopped else "length"
            results.append(Out(text, len(ids), finish))
        return results

    def generate(self, reqs: list[Gen]) -> list[Out]:
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
                for j, o in zip(same, self._run([reqs[j] for j in same])):
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


class VLLMEngine:
    """vLLM's offline ``LLM.generate`` on token ids (GPU only; not exercised by the CPU tests)."""

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str,
        seed: int,
        tensor_parallel_size: int,
        max_model_len=None,
        revision=None,
        trust_remote_code=False,
    ):
        from transformers import AutoTokenizer
        from vllm import LLM

        self.tok = AutoTokenizer.from_pretrained(
            model_path, revision=revision, trust_remote_code=trust_remote_code
        )
        self.seed = seed
        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            revision=revision,
            trust_remote_code=trust_remote_code,
        )

    def generate(self, reqs: list[Gen]) -> list[Out]:
        from vllm import SamplingParams

        prompts = [
            {"prompt_token_ids": self.tok(r.prompt, add_special_tokens=False)["input_ids"]} for r in reqs
        ]
        params = [
            SamplingParams(
                temperature=r.temperature,
                top_p=r.top_p,
                max_tokens=r.max_new,
                stop=list(r.stop) or None,
                seed=None if r.seed is None else (self.seed * 1_000_003 + r.seed) % 2**31,
            )
            for r in reqs
        ]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        return [
            Out(
                o.outputs[0].text,
                len(o.outputs[0].token_ids),
                "length" if o.outputs[0].finish_reason == "length" else "stop",
            )
            for o in outs
        ]


def make_engine(backend: str, model_path: str, **kw):
    started = time.perf_counter()
    if backend == "vllm":
        kw.pop("batch_size", None)
        kw.pop("device", None)
        engine = VLLMEngine(model_path, **kw)
    else:
        kw.pop("tensor_parallel_size", None)
        kw.pop("max_model_len", None)
        engine = HFEngine(model_path, **kw)
    log.info("%s engine for %s loaded in %.1f s", backend, model_path, time.perf_counter() - started)
    return engine
