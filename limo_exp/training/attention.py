"""Attention over packed rows that costs what the documents cost alone.

A packed row holds several documents one after another, position ids restarting at each. Through
``sdpa`` transformers turns those position ids into a block-diagonal [L x L] mask, and the kernel
computes every document against every other before masking: for LIMO-like rows (8 documents of
1k-12k tokens in 16k) that is several times the work, and half of a step's GPU time.

``limo_varlen`` is a transformers attention function (registered on import) that reads the
documents' boundaries instead of a mask:

- the row's ``cu_seq_lens_q`` / ``cu_seq_lens_k`` (int32 offsets, ``[0, n1, n1 + n2, ...]``) and
  ``max_length_q`` / ``max_length_k`` (a Python int) arrive as model keyword arguments, computed
  once per row on the host (``sft_data.pack``): the same names flash-attn's integration reads, so
  ``flash_attention_2`` takes the same batch;
- on CUDA it calls PyTorch's FlashAttention varlen kernel (``torch.nn.attention.varlen``,
  torch >= 2.10; causal is ``window_size=(-1, 0)``; GQA by ``enable_gqa`` where the kernel has it,
  else the KV heads repeated); a row holding one document takes ``sdpa``'s causal path;
- elsewhere (the CPU), the same function computes each document with causal ``sdpa`` in turn: the
  reference the CUDA path is tested against, and no [L x L] mask either.

No mask function is registered for the name, so transformers builds none (its mask code returns
early for an attention implementation it has no mask function for).

``choose(requested)`` resolves ``model.attn_implementation=auto`` for training and says why;
``count_attention(model)`` counts the query-key pairs a model's attention computes against the
pairs per-document attention needs (1.0 when no cross-document work is done), for the benches.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

NAME = "limo_varlen"
# a one-document row: sdpa's causal path (measured faster on torch 2.11, whose varlen kernel has
# no GQA); the GPU bench's limo_16k_varlen setting turns this off to compare
SINGLE_DOCUMENT_SDPA = True
KERNEL_DEVICES = ("cuda",)  # where torch's varlen kernel runs (tests add "cpu" with a stand-in kernel)


def _varlen():
    """torch's varlen FlashAttention function and whether it takes ``enable_gqa`` (None, False
    where this torch has none)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, False
    return varlen_attn, "enable_gqa" in inspect.signature(varlen_attn).parameters


def varlen_available() -> str:
    """Why torch's varlen kernel cannot run here ("" when it can: CUDA and torch >= 2.10)."""
    if _varlen()[0] is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen (torch >= 2.10)"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return ""


def choose(requested: str = "auto", *, training: bool = True) -> tuple[str, str]:
    """The attention implementation for ``model.attn_implementation=requested``, and why.

    ``auto`` for training: ``flash_attention_2`` on CUDA with flash-attn installed; else
    ``limo_varlen`` (torch's varlen kernel on CUDA, per-document ``sdpa`` on the CPU); ``sdpa``
    only on CUDA without the varlen kernel (said in the reason). ``auto`` outside training:
    ``flash_attention_2`` where it can run, else ``sdpa``. A named implementation is kept."""
    if requested != "auto":
        return requested, "as configured"
    cuda = torch.cuda.is_available()
    if cuda and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2", "CUDA with flash-attn installed"
    if not training:
        return "sdpa", "flash-attn is not installed" if cuda else "no CUDA device"
    if not cuda:
        return NAME, "no CUDA device: each packed document through causal sdpa, no [L x L] mask"
    why = varlen_available()
    if why:
        return "sdpa", f"flash-attn is not installed and {why}: packed rows get a dense block mask"
    return NAME, "flash-attn is not installed: torch's varlen FlashAttention kernel"


def describe(model) -> tuple[str, str]:
    """The attention ``model`` runs with, and why (what ``choose`` said when it was chosen)."""
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    for requested in ("auto",):
        chosen, why = choose(requested)
        if chosen == impl:
            return impl, why
    return impl, "as loaded (model.attn_implementation or the caller)"


def boundaries(lengths: list[int]) -> dict:
    """The model keyword arguments for a row of documents of ``lengths`` tokens (host tensors)."""
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    cu_t = torch.tensor(cu, dtype=torch.int32)
    longest = max(lengths)
    return {"cu_seq_lens_q": cu_t, "cu_seq_lens_k": cu_t, "max_length_q": longest, "max_length_k": longest}


def _flash_dtype(q: torch.Tensor) -> torch.dtype:
    """bf16/fp16 as given; fp32 (rotary embeddings leave q and k in fp32 under autocast) goes to
    autocast's dtype, else bf16: the flash kernel takes 16-bit inputs only."""
    if q.dtype in (torch.float16, torch.bfloat16):
        return q.dtype
    if torch.is_autocast_enabled(q.device.type):
        return torch.get_autocast_dtype(q.device.type)
    return torch.bfloat16


def varlen_attention(
    module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, **kwargs
):
    """A transformers attention function: ``query`` (1, heads, L, d), ``key``/``value`` (1,
    kv_heads, L, d); returns (1, L, heads, d) and no weights. Without boundaries the row is one
    causal document."""
    if attention_mask is not None:
        raise ValueError(
            f"{NAME} reads document boundaries, not a mask: got a mask of {tuple(attention_mask.shape)}"
        )
    if dropout:
        raise ValueError(f"{NAME} has no attention dropout (got {dropout})")
    b, h, n, d = query.shape
    cu = kwargs.get("cu_seq_lens_q")
    kernel, gqa = _varlen()
    on_kernel = kernel is not None and query.device.type in KERNEL_DEVICES
    if cu is None or (cu.shape[0] == 2 and (SINGLE_DOCUMENT_SDPA or not on_kernel)):  # one document a row
        return _causal_sdpa(query, key, value, scaling).transpose(1, 2), None
    if b != 1:
        raise ValueError(f"{NAME}: a packed batch is one row, got {b} rows")
    if not on_kernel:
        return reference(query, key, value, cu, scaling).transpose(1, 2), None
    dt = _flash_dtype(query)
    q = query[0].transpose(0, 1).to(dt)  # (L, heads, d)
    k = key[0].transpose(0, 1).to(dt)
    v = value[0].transpose(0, 1).to(dt)
    extra = {}
    if k.shape[1] != h:
        if gqa:
            extra["enable_gqa"] = True
        else:  # torch 2.11's kernel: the KV heads repeated
            k = k.repeat_interleave(h // k.shape[1], dim=1)
            v = v.repeat_interleave(h // v.shape[1], dim=1)
    mq = kwargs["max_length_q"]
    mk = kwargs.get("max_length_k", mq)
    out = kernel(
        q, k, v, cu, kwargs.get("cu_seq_lens_k", cu), mq, mk, scale=scaling, window_size=(-1, 0), **extra
    )
    out = out.unsqueeze(0)
    if not torch.is_autocast_enabled(query.device.type) and out.dtype != query.dtype:  # fp32 compute
        out = out.to(query.dtype)
    return out, None


def _causal_sdpa(q, k, v, scaling):
    gqa = k.shape[1] != q.shape[1]
    if q.dtype != k.dtype or q.dtype != v.dtype:
        dt = v.dtype
        q, k = q.to(dt), k.to(dt)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=gqa)


def reference(query, key, value, cu: torch.Tensor, scaling: float | None = None) -> torch.Tensor:
    """Each document of the row alone through causal ``sdpa``: (1, heads, L, d). Reads the
    boundaries on the host (free on the CPU; on CUDA a sync, so the CUDA path is the kernel)."""
    edges = cu.tolist()
    parts = [
        _causal_sdpa(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], scaling)
        for s, e in zip(edges[:-1], edges[1:])
    ]
    return torch.cat(parts, dim=2)


def register() -> None:
    """Make ``limo_varlen`` a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, varlen_attention)


register()


# ---------------------------------------------------------------- counting the work
@dataclass
class AttentionWork:
    """Query-key pairs over all attention calls: computed by the kernel, and needed by
    per-document attention (each document against itself only)."""

    computed: int = 0
    needed: int = 0
    calls: int = 0
    masks: int = 0  # calls that received a dense mask

    @property
    def ratio(self) -> float:
        return self.computed / self.needed if self.needed else float("nan")


@contextlib.contextmanager
def count_attention(model):
    """Count the query-key pairs every attention call of ``model`` computes (full squares, so the
    causal half does not enter the ratio): a call given a 4D mask computes the whole [q x k]; a
    ``limo_varlen`` or flash-attention call given boundaries, each document's square; any other
    call, the whole row. ``needed`` is the documents' squares (from the boundaries, or the whole
    row when none are given). For the benches: it reads the boundaries on the host."""
    work = AttentionWork()
    impl = lambda: model.config._attn_implementation  # noqa: E731 (read per call: it may change)

    def hook(module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        b, n = hidden.shape[0], hidden.shape[1]
        mask = kwargs.get("attention_mask")
        cu = kwargs.get("cu_seq_lens_q")
        docs = [n] * b if cu is None else [e - s for s, e in zip(cu.tolist()[:-1], cu.tolist()[1:])]
        needed = sum(x * x for x in docs)
        work.calls += 1
        work.needed += needed
        if isinstance(mask, torch.Tensor) and mask.dim() == 4:
            work.masks += 1
            work.computed += b * mask.shape[-2] * mask.shape[-1]
        elif cu is not None and (impl() == NAME or impl().startswith("flash_attention")):
            work.computed += needed
        else:
            work.computed += b * n * n

    handles = [
        m.register_forward_pre_hook(hook, with_kwargs=True)
        for name, m in model.named_modules()
        if name.endswith("self_attn")
    ]
    try:
        yield work
    finally:
        for h in handles:
            h.remove()
