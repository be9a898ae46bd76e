"""What the static decoding needs of GPU memory: cache lengths in few buckets, the batch that fits
free memory, and which exceptions are an out-of-memory.

    length = cache_bucket(prompt + max_new, limit)      # 128, 192, 256, 384, ... capped at limit
    batch = fit_batch(model, length, cap=256)           # a power of two

``fit_batch`` counts, per row, the KV store of ``length`` positions (``kv.KVStore``), one layer of
it again (the copy a column shift makes) and the logits with the sampler's temporaries; once for
the batch, a prefill chunk of ``PREFILL_CHUNK`` tokens (its activations and its mask over
``length`` keys). Free memory is the driver's free memory plus what PyTorch's allocator holds
cached but unused (``mem_get_info`` counts that as used), plus ``reclaimable`` bytes the caller
will free first (the KV store of the decoder it replaces).
"""

from __future__ import annotations

import torch

MIN_CACHE = 128
PREFILL_CHUNK = 1024  # tokens of one row prefilled per forward (re-forming, long prompts)


def cache_bucket(n: int, limit: int | None = None) -> int:
    """The cache length for ``n`` positions: the next of 128, 192, 256, 384, 512, 768, ... (two
    per octave, so at most a third is unused), capped at ``limit`` (the model's positions)."""
    size = MIN_CACHE
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return min(size, limit) if limit else size


def kv_geometry(config) -> tuple[int, int, int, int]:
    """(layers, KV heads, head dim, query heads per KV head) of a decoder's config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim, heads // kv_heads


def free_memory(reclaimable: int = 0) -> int:
    """Bytes a new allocation can take: the driver's free memory, PyTorch's cached-but-unused
    blocks, and ``reclaimable`` bytes the caller frees before allocating."""
    free, _ = torch.cuda.mem_get_info()
    cached = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    return free + max(cached, 0) + reclaimable


def decode_bytes(model, length: int, chunk: int = PREFILL_CHUNK) -> tuple[int, int]:
    """(bytes per row, bytes once for the batch) of decoding with a cache of ``length``."""
    c = model.config
    elem = next(model.parameters()).element_size()
    layers, kv_heads, head_dim, _ = kv_geometry(c)
    kv = 2 * layers * kv_heads * head_dim * length * elem
    per_row = kv + kv // (2 * layers) + 3 * c.vocab_size * 4
    chunk = min(chunk, length)
    once = chunk * (4 * c.hidden_size + 2 * c.intermediate_size) * elem + 4 * chunk * length
    return per_row, once


def fit_batch(
    model, length: int, cap: int, headroom: float = 0.8, *, chunk: int = PREFILL_CHUNK, reclaimable: int = 0
) -> int:
    """The largest power-of-two batch (at most ``cap``) whose KV store of ``length`` positions per
    row, plus one chunked prefill, fit in ``headroom`` of the free GPU memory (``free_memory``)."""
    per_row, once = decode_bytes(model, length, chunk)
    fits = int((headroom * free_memory(reclaimable) - once) // per_row)
    batch = 1
    while batch * 2 <= min(fits, cap):
        batch *= 2
    return batch


def is_out_of_memory(e: BaseException) -> bool:
    """A CUDA out-of-memory, also one raised while compiling (torch._dynamo wraps it in
    ``BackendCompilerFailed``, its ``inner_exception``) or raised from one."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, torch.cuda.OutOfMemoryError):
            return True
        e = getattr(e, "inner_exception", None) or e.__cause__
    return False
