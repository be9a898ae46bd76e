"""Generation engines behind the evaluation wrapper: transformers (``hf``, batched, prompts sorted
by length) and vLLM. Both take templated prompts and return the text, the number of generated
tokens and how generation ended, so that budgets and truncation are counted in real tokens.

    engine = backend.make_engine("hf", path, EngineOptions(dtype="bfloat16", device="cuda"))
    outs = engine.generate([Gen(prompt, max_new=512, stop=("</think>",))])

The hf engine is in ``evaluation.hf``; ``backend.make_engine`` builds either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from limo_exp.config_eval import HF_DECODINGS as DECODINGS

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


@dataclass(frozen=True)
class EngineOptions:
    """What an engine is built from, assembled once per command (``evaluate``, ``distill``)."""

    dtype: str = "float32"
    seed: int = 0
    device: str = "cpu"
    batch_size: int | str = "auto"
    max_batch_size: int = 128  # caps batch_size=auto where it is fitted to free GPU memory
    decoding: str = "auto"  # hf: auto (compiled on CUDA, eager on CPU) | eager | static | compiled
    attn_implementation: str = "auto"
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    revision: str | None = None
    trust_remote_code: bool = False


def hf_decoding(requested: str, device: str) -> str:
    if requested not in DECODINGS:
        raise ValueError(f"unknown hf decoding {requested!r}; valid: {', '.join(DECODINGS)}")
    if requested != "auto":
        return requested
    return "compiled" if device == "cuda" else "eager"


def engine_options(section, *, context: int | None, **kw) -> EngineOptions:
    """The options of an engine for ``section`` (``eval`` or ``distill``), plus the model's
    settings in ``kw`` (dtype, seed, device, attn_implementation, revision, trust_remote_code)."""
    return EngineOptions(
        batch_size=section.batch_size,
        max_batch_size=section.max_batch_size,
        decoding=section.hf_decoding,
        tensor_parallel_size=section.tensor_parallel_size,
        max_model_len=context,
        **kw,
    )


class VLLMEngine:
    """vLLM's offline ``LLM.generate`` on token ids (GPU only; not exercised by the CPU tests)."""

    name = "vllm"

    decoding = "vllm"

    def __init__(self, model_path: str, opts: EngineOptions):
        from transformers import AutoTokenizer
        from vllm import LLM

        kw = {"revision": opts.revision, "trust_remote_code": opts.trust_remote_code}
        self.tok = AutoTokenizer.from_pretrained(model_path, **kw)
        self.seed = opts.seed
        self.llm = LLM(
            model=model_path,
            dtype=opts.dtype,
            seed=opts.seed,
            tensor_parallel_size=opts.tensor_parallel_size,
            max_model_len=opts.max_model_len,
            **kw,
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
