"""The generation backend of an evaluation: which one (hf or vLLM), its model arguments, the
generation budget that fits the model's context, and the generation settings."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from limo_exp.config import BACKENDS
from limo_exp.evaluation.generation.engines import EngineOptions

log = logging.getLogger(__name__)


def default_gen_kwargs(
    max_gen_toks: int = 32768, temperature: float = 0.0, top_p: float = 1.0
) -> dict[str, Any]:
    """Greedy when temperature is 0, else sampling with temperature / top_p. No stop strings:
    generation runs to the end-of-turn token or max_gen_toks."""
    kw: dict[str, Any] = {"until": [], "max_gen_toks": int(max_gen_toks)}
    if temperature and temperature > 0:
        kw.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
    else:
        kw.update(do_sample=False, temperature=0.0)
    return kw


def package_version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def choose_backend(requested: str) -> str:
    """``auto``: vLLM when CUDA is present and vllm imports, else the ``hf`` engine. vLLM's CPU
    build is not picked by ``auto`` (it starts in a minute or two, and on 2 cores ran 2.5x hf at
    batch 16: worth it for long evaluations only); ``eval.backend=vllm`` runs it. The choice and
    its reason are logged."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; valid: {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    import importlib.util

    import torch

    has_vllm = importlib.util.find_spec("vllm") is not None
    if torch.cuda.is_available() and has_vllm:
        chosen, why = "vllm", "CUDA and vllm are present"
    elif has_vllm:
        chosen, why = "hf", "no CUDA: vLLM's CPU build is not chosen by auto (set eval.backend=vllm)"
    else:
        chosen, why = "hf", "vllm is not installed"
    log.info("eval.backend=auto: %s (%s)", chosen, why)
    return chosen


def model_context_length(
    model_path: str, trust_remote_code: bool = False, revision: str | None = None
) -> int | None:
    """The model's maximum positions (config.json), or None when it cannot be read."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(
            model_path, revision=revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError):
        return None
    return getattr(config, "max_position_embeddings", None)


def fit_generation_budget(max_gen_toks: int, context: int | None, prompt_reserve: int = 2048) -> int:
    """Clamp the generation budget so that a prompt of up to ``min(prompt_reserve, context/4)``
    tokens still fits the context (LIMO's 32768 on a 32768-position model: 30720). Logged as
    ``max_gen_toks`` next to ``max_gen_toks_requested``."""
    if not context or max_gen_toks + min(prompt_reserve, context // 4) <= context:
        return max_gen_toks
    fitted = context - min(prompt_reserve, context // 4)
    log.warning(
        "max_gen_toks %d does not fit the model's %d positions with a prompt: using %d",
        max_gen_toks,
        context,
        fitted,
    )
    return fitted


def warn_slow_generation(backend: str, device: str, tasks: dict, suite, max_gen_toks: int) -> float | None:
    """Before a long ``hf`` evaluation on CUDA: the worst-case generated tokens and hours at the
    throughput measured for the decoding in use (``eval.hf_decoding``) and this batch size, naming
    vLLM. Returns the estimated hours; None where that decoding has no measured rate."""
    if backend != "hf" or device != "cuda":
        return None
    n = 0
    for name, task in tasks.items():
        docs = len(task.eval_docs) if suite.limit is None else min(suite.limit, len(task.eval_docs))
        n += docs * suite.samples_for(name)
    from limo_exp.evaluation.generation.engines import hf_decoding
    from limo_exp.hardware import hf_tokens_per_s

    decoding = hf_decoding(suite.hf_decoding, device)
    batch = 64 if suite.batch_size == "auto" else int(suite.batch_size)
    measured = hf_tokens_per_s(decoding, batch)
    if measured is None:  # never another decoding's rate: eager's is ~10x below a compiled step's
        log.info(
            "hf backend on CUDA, %s decoding: %d responses x up to %d new tokens = %.2g tokens; no %s "
            "throughput measured on a GPU yet (bench/bench_gpu_eval.py), so no hours are estimated",
            decoding,
            n,
            max_gen_toks,
            n * max_gen_toks,
            decoding,
        )
        return None
    rate, at = measured
    hours = n * max_gen_toks / rate / 3600
    if hours > 1:
        log.warning(
            "hf backend on CUDA: %d responses x up to %d new tokens = %.2g tokens, ~%.0f h at the %.0f tokens/s "
            "measured for %s decoding at batch %d; vLLM (pip install vllm; eval.backend=vllm) is typically an "
            "order of magnitude faster",
            n,
            max_gen_toks,
            n * max_gen_toks,
            hours,
            rate,
            decoding,
            at,
        )
    return hours


def make_engine(backend: str, model_path: str, opts: EngineOptions):
    """The engine of ``backend`` (hf or vllm) for ``model_path``; the model loads here. vLLM with
    ``opts.data_parallel_size`` > 1: that many engines, each in its own process on its own
    ``opts.tensor_parallel_size`` GPUs (``data_parallel.DataParallelEngine``)."""
    from functools import partial

    from limo_exp.evaluation.generation.data_parallel import DataParallelEngine
    from limo_exp.evaluation.generation.hf import HFEngine
    from limo_exp.evaluation.generation.vllm_engine import VLLMEngine

    started = time.perf_counter()
    if backend == "vllm" and opts.data_parallel_size > 1:
        one = partial(VLLMEngine, model_path, replace(opts, data_parallel_size=1))
        engine = DataParallelEngine(one, opts.data_parallel_size, opts.tensor_parallel_size)
    else:
        engine = (VLLMEngine if backend == "vllm" else HFEngine)(model_path, opts)
    engine.start_seconds = time.perf_counter() - started  # logged apart, never in tokens/s
    log.info("%s engine for %s started in %.1f s", backend, model_path, engine.start_seconds)
    return engine
