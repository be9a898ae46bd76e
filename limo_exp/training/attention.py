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
- on CUDA (sm_80 or newer) it calls PyTorch's FlashAttention varlen kernel
  (``torch.nn.attention.varlen``, torch >= 2.10: 2.10's takes ``is_causal`` and no ``scale``,
  later ones ``window_size=(-1, 0)`` and ``scale``; ``Kernel`` adapts to the signature, read
  once); GQA by ``enable_gqa`` where the kernel has it, else the KV heads repeated; a row
  holding one document takes ``sdpa``'s causal path;
- elsewhere (the CPU), each document through causal ``sdpa`` in turn: the reference the CUDA
  path is tested against, and no [L x L] mask either.

No mask function is registered for the name, so transformers builds none. Under
``flash_attention_2`` transformers' mask code reads the position ids on the device to detect
packing (a host sync per forward); ``use_host_boundaries`` spares it when the boundaries came
from the host. ``choose`` resolves ``model.attn_implementation=auto`` and says why (flash-attn
only where it imports, FlashAttention kernels only on sm_80+); ``count_attention`` counts the
work (``attention_work``).
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import importlib.util
import inspect
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from limo_exp.training.attention_work import VARLEN

log = logging.getLogger(__name__)

NAME = VARLEN  # "limo_varlen"
# a one-document row: sdpa's causal path (measured faster on torch 2.11, whose varlen kernel has
# no GQA); the GPU bench's limo_16k_varlen setting turns this off to compare
SINGLE_DOCUMENT_SDPA = True
KERNEL_DEVICES = ("cuda",)  # where torch's varlen kernel runs (tests add "cpu" with a stand-in kernel)


@dataclass(frozen=True)
class Kernel:
    """torch's varlen FlashAttention function and what its signature takes: torch 2.10's takes
    ``is_causal`` (no ``scale``, no ``window_size``), torch >= 2.11's ``scale`` and
    ``window_size=(-1, 0)`` for causal, and some ``enable_gqa``."""

    fn: object
    causal: dict  # the keyword that makes it causal
    scale: bool  # takes ``scale``
    gqa: bool  # takes ``enable_gqa``

    def __call__(self, q, k, v, cu_q, cu_k, max_q: int, max_k: int, scaling, **extra):
        if scaling is not None and not self.scale:  # torch 2.10: 1/sqrt(d) only, so q carries the rest
            factor = scaling * q.shape[-1] ** 0.5
            q = q * factor if abs(factor - 1.0) > 1e-12 else q
        kw = {**self.causal, **extra, **({"scale": scaling} if self.scale else {})}
        return self.fn(q, k, v, cu_q, cu_k, max_q, max_k, **kw)


def kernel_for(fn) -> tuple[Kernel | None, str]:
    """The ``Kernel`` adapter for a varlen function by its signature, or None and why."""
    params = inspect.signature(fn).parameters
    if "window_size" in params:
        causal = {"window_size": (-1, 0)}
    elif "is_causal" in params:
        causal = {"is_causal": True}
    else:
        return None, f"torch {torch.__version__}'s varlen_attn takes neither window_size nor is_causal"
    return Kernel(fn, causal, "scale" in params, "enable_gqa" in params), ""


@functools.lru_cache(maxsize=1)
def _varlen() -> tuple[Kernel | None, str]:
    """torch's varlen kernel as a ``Kernel`` (its signature read once), or None and why."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, f"torch {torch.__version__} has no torch.nn.attention.varlen (torch >= 2.10)"
    return kernel_for(varlen_attn)


def capability() -> tuple[int, int]:
    """The CUDA device's compute capability (major, minor)."""
    return torch.cuda.get_device_capability()


MIN_CAPABILITY = (8, 0)  # FlashAttention kernels (flash-attn 2, torch's varlen): Ampere or newer


def _old_gpu() -> str:
    """Why this GPU cannot run FlashAttention kernels ("" when it can)."""
    major, minor = capability()
    if (major, minor) < MIN_CAPABILITY:
        return f"this GPU is sm_{major}{minor}, and FlashAttention kernels need sm_80 (Ampere) or newer"
    return ""


def varlen_available() -> str:
    """Why torch's varlen kernel cannot run here ("" when it can: torch >= 2.10 with a varlen
    function whose signature is known, a CUDA device of sm_80 or newer)."""
    why = _varlen()[1]
    if why:
        return why
    if not torch.cuda.is_available():
        return "no CUDA device"
    return _old_gpu()


def flash_attn_missing() -> str:
    """Why flash-attn cannot be used ("" when it imports). It is imported, not only looked up: a
    build made for another torch is found but fails at load (an undefined symbol)."""
    if importlib.util.find_spec("flash_attn") is None:
        return "flash-attn is not installed"
    try:
        importlib.import_module("flash_attn")
    except Exception as e:  # noqa: BLE001 (any failure at import means: do not use it)
        return f"flash-attn is installed but fails to import ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    return ""


def choose(requested: str = "auto", *, training: bool = True) -> tuple[str, str]:
    """The attention implementation for ``model.attn_implementation=requested``, and why.

    ``auto`` for training: ``flash_attention_2`` on a CUDA GPU of sm_80 or newer where flash-attn
    imports; else ``limo_varlen`` (torch's varlen kernel on CUDA, per-document ``sdpa`` on the
    CPU); ``sdpa`` on CUDA without a usable varlen kernel (torch < 2.10, a pre-Ampere GPU: said in
    the reason). ``auto`` outside training: ``flash_attention_2`` where it can run, else ``sdpa``.
    A named implementation is kept, except ``flash_attention_2`` where flash-attn fails to import
    (a ValueError naming the key: the model would fail to load)."""
    if requested != "auto":
        if requested == "flash_attention_2" and flash_attn_missing():
            raise ValueError(f"model.attn_implementation=flash_attention_2: {flash_attn_missing()}; use auto")
        return requested, "as configured"
    if not torch.cuda.is_available():
        if not training:
            return "sdpa", "no CUDA device"
        return NAME, "no CUDA device: each packed document through causal sdpa, no [L x L] mask"
    old = _old_gpu()
    if old:
        return "sdpa", f"{old}: packed rows get a dense block mask"
    flash = flash_attn_missing()
    if not flash:
        return "flash_attention_2", "CUDA with flash-attn installed"
    if not training:
        return "sdpa", flash
    why = varlen_available()
    if why:
        return "sdpa", f"{flash} and {why}: packed rows get a dense block mask"
    return NAME, f"{flash}: torch's varlen FlashAttention kernel"


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
    kernel = _varlen()[0]
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
        if kernel.gqa:
            extra["enable_gqa"] = True
        else:  # torch 2.10/2.11's kernel: the KV heads repeated
            k = k.repeat_interleave(h // k.shape[1], dim=1)
            v = v.repeat_interleave(h // v.shape[1], dim=1)
    mq = kwargs["max_length_q"]
    mk = kwargs.get("max_length_k", mq)
    out = kernel(q, k, v, cu, kwargs.get("cu_seq_lens_k", cu), mq, mk, scaling, **extra)
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
    from limo_exp.training.syncs import host_side

    with host_side():
        edges = cu.tolist()
    parts = [
        _causal_sdpa(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], scaling)
        for s, e in zip(edges[:-1], edges[1:])
    ]
    return torch.cat(parts, dim=2)


_BOUNDARIES_GIVEN = contextvars.ContextVar("limo_boundaries_given", default=False)


def _find_packed(position_ids):
    """transformers' ``find_packed_sequence_indices``, except inside a decoder forward that was
    handed its boundaries from the host for a FlashAttention implementation: there it returns
    None without reading the device. Exact: under ``flash_attention_*`` without a padding mask the
    mask is None either way, and the kernel reads ``cu_seq_lens_q/k``, not the mask."""
    if _BOUNDARIES_GIVEN.get():
        return None
    return _find_packed.plain(position_ids)


def use_host_boundaries(model) -> None:
    """Spare ``model``'s forwards the device read of transformers' packed-row detection
    (``find_packed_sequence_indices``: one host sync per forward under ``flash_attention_2``,
    whose mask code runs it on the position ids) when the row's boundaries come from the host
    (``cu_seq_lens_q``, as ``sft_data.pack`` gives them). Idempotent."""
    from transformers import masking_utils

    if masking_utils.find_packed_sequence_indices is not _find_packed:
        _find_packed.plain = masking_utils.find_packed_sequence_indices
        masking_utils.find_packed_sequence_indices = _find_packed
    decoder = model.get_decoder()
    if getattr(decoder, "_limo_host_boundaries", False):
        return
    plain, config = decoder.forward, model.config

    def forward(*args, **kwargs):
        given = (
            kwargs.get("cu_seq_lens_q") is not None
            and kwargs.get("attention_mask") is None
            and str(config._attn_implementation).startswith("flash_attention")
        )
        token = _BOUNDARIES_GIVEN.set(given)
        try:
            return plain(*args, **kwargs)
        finally:
            _BOUNDARIES_GIVEN.reset(token)

    decoder.forward = forward
    decoder._limo_host_boundaries = True


def register() -> None:
    """Make ``limo_varlen`` a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, varlen_attention)


register()


# counting the work, for the benches (in a module of its own; its names as before)
from limo_exp.training.attention_work import AttentionWork, count_attention  # noqa: E402, F401
