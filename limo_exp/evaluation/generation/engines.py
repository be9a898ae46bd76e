"""Generation engines behind the evaluation wrapper: transformers (``hf``, batched, prompts sorted
by length) and vLLM. Both take templated prompts and return the text, the number of generated
tokens and how generation ended, so that budgets and truncation are counted in real tokens.

    engine = backend.make_engine("hf", path, EngineOptions(dtype="bfloat16", device="cuda"))
    outs = engine.generate([Gen(prompt, max_new=512, stop=("</think>",))])

The hf engine is in ``generation.hf``, vLLM in ``generation.vllm_engine``; ``backend.make_engine`` builds either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from limo_exp.config_eval import HF_DECODINGS as DECODINGS

log = logging.getLogger(__name__)

# batch_size=auto for eager generate; CUDA halves on out-of-memory. CPU 16: the demo's evaluation
# (SmolLM2-135M, 64 problems, 2 cores) gave batch 1's 64 greedy texts in 20 s instead of 80-92 s;
# 64 took 13-15 s but holds 4x the KV cache of long generations (tests/test_decoding.py: the texts)
AUTO_BATCH = {"cuda": 64, "cpu": 16}


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


def requests_per_call(engine, n: int) -> int:
    """How many of ``n`` requests ``engine`` takes a call: its own ``requests_per_call`` (None: all
    of them, as vLLM wants them, so its scheduler never waits on one response), else 4 x its batch
    (at least 16: an hf batch refills from what waits)."""
    batch = int(getattr(engine, "batch_size", 16) or 16)
    return getattr(engine, "requests_per_call", max(16, 4 * batch)) or max(n, 1)


def in_order(groups, n: int) -> list[Out]:
    """The ``n`` responses of a ``stream`` (groups of ``(index, Out)`` as they finish) in request order."""
    done: dict[int, Out] = {}
    for group in groups:
        done.update(group)
    return [done[i] for i in range(n)]


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stop if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def response(tok, ids: list[int], stop: tuple[str, ...], ended: bool) -> Out:
    """A response from its generated ids, the one rule of every engine: the ids leave out the
    end-of-turn token and count a stop string's tokens; the text is the tokenizer's decoding of
    the ids (special tokens skipped) cut at the first stop string."""
    text, stopped = _cut_at_stop(tok.decode(ids, skip_special_tokens=True), stop)
    return Out(text, len(ids), "stop" if ended or stopped else "length")


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
    tensor_parallel_size: int = 1  # vLLM: GPUs one engine spans (resolved: never auto here)
    data_parallel_size: int = 1  # vLLM: engines side by side, each on its own GPUs (one process each)
    max_model_len: int | None = None
    vllm_kv_cache_gb: float = 4.0  # vLLM on CPU: its KV cache (VLLM_CPU_KVCACHE_SPACE)
    vllm_gpu_memory_utilization: float = 0.9  # vLLM on GPU: the share of GPU memory it takes
    revision: str | None = None
    trust_remote_code: bool = False


def hf_decoding(requested: str, device: str) -> str:
    if requested not in DECODINGS:
        raise ValueError(f"unknown hf decoding {requested!r}; valid: {', '.join(DECODINGS)}")
    if requested != "auto":
        return requested
    return "compiled" if device == "cuda" else "eager"


def engine_options(
    section, *, context: int | None, backend: str = "hf", model_path: str | None = None, **kw
) -> EngineOptions:
    """The options of an engine for ``section`` (``eval`` or ``distill``), plus the model's
    settings in ``kw`` (dtype, seed, device, attn_implementation, revision, trust_remote_code).
    For ``backend="vllm"`` the tensor- and data-parallel sizes are resolved here
    (``parallel.resolve_parallel``: ``auto`` from ``model_path``'s config and the GPUs), so a model
    that fits no GPU split is an error before anything loads."""
    from limo_exp.evaluation.generation.parallel import Parallel, resolve_parallel

    max_model_len = (
        min(context, section.vllm_max_model_len) if context and section.vllm_max_model_len else context
    )
    par = Parallel()
    if backend == "vllm":

        def config_of():
            from transformers import AutoConfig

            return AutoConfig.from_pretrained(
                model_path, revision=kw.get("revision"), trust_remote_code=kw.get("trust_remote_code", False)
            )

        prefix = "distill" if type(section).__name__ == "DistillConfig" else "eval"
        par = resolve_parallel(
            section,
            prefix=prefix,
            config_of=config_of,
            dtype=kw.get("dtype", "float32"),
            max_model_len=max_model_len,
        )
    return EngineOptions(
        batch_size=section.batch_size,
        max_batch_size=section.max_batch_size,
        decoding=section.hf_decoding,
        tensor_parallel_size=par.tensor,
        data_parallel_size=par.data,
        max_model_len=max_model_len,
        vllm_kv_cache_gb=section.vllm_kv_cache_gb,
        vllm_gpu_memory_utilization=section.vllm_gpu_memory_utilization,
        **kw,
    )
