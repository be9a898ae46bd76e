"""Variable-length attention over packed rows (limo_exp.training.attention): the registered
function against per-document attention, the kernel path's glue against a stand-in kernel, the
whole model packed vs unpacked, and no [L x L] mask anywhere."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from limo_exp.training import attention
from limo_exp.training.attention import NAME, boundaries, choose, count_attention, varlen_attention

LENGTHS = [5, 9, 1, 12, 3]


def _qkv(heads=4, kv_heads=2, d=8, lengths=LENGTHS, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    q = torch.randn(1, heads, n, d, generator=g, dtype=dtype)
    k = torch.randn(1, kv_heads, n, d, generator=g, dtype=dtype)
    v = torch.randn(1, kv_heads, n, d, generator=g, dtype=dtype)
    return q, k, v


def _block_causal_oracle(q, k, v, lengths, scale=None):
    """Attention with an explicit block-diagonal causal mask, by hand (softmax over masked scores)."""
    h = q.shape[1]
    k = k.repeat_interleave(h // k.shape[1], dim=1).float()
    v = v.repeat_interleave(h // v.shape[1], dim=1).float()
    doc = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
    idx = torch.arange(len(doc))
    allowed = (doc[:, None] == doc[None, :]) & (idx[None, :] <= idx[:, None])
    scores = q.float() @ k.transpose(-1, -2) * (scale or q.shape[-1] ** -0.5)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2)  # (1, L, heads, d)


def test_the_cpu_path_equals_per_document_causal_attention():
    q, k, v = _qkv()
    out, weights = varlen_attention(None, q, k, v, None, scaling=0.3, **boundaries(LENGTHS))
    assert weights is None and out.shape == (1, sum(LENGTHS), 4, 8)
    torch.testing.assert_close(out, _block_causal_oracle(q, k, v, LENGTHS, 0.3), rtol=1e-5, atol=1e-6)
    # the boundaries matter: the same row read as one document differs
    whole, _ = varlen_attention(None, q, k, v, None, scaling=0.3)
    assert (whole - out).abs().max() > 1e-2


def test_boundaries_are_the_offsets_of_the_documents():
    b = boundaries([5, 9, 1])
    assert b["cu_seq_lens_q"].tolist() == [0, 5, 14, 15] and b["cu_seq_lens_q"].dtype == torch.int32
    assert b["max_length_q"] == b["max_length_k"] == 9 and isinstance(b["max_length_q"], int)


class _StandInKernel:
    """What the CUDA path hands torch's varlen kernel, checked and computed by hand: (total,
    heads, d) 16-bit tensors, int32 offsets, causal as window_size=(-1, 0)."""

    def __init__(self, gqa: bool):
        self.gqa, self.calls = gqa, []

    def __call__(self, q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), **kw):
        assert q.dtype in (torch.bfloat16, torch.float16) and q.dtype == k.dtype == v.dtype
        assert q.dim() == 3 and cu_q.dtype == torch.int32 and window_size == (-1, 0)
        assert isinstance(max_q, int) and isinstance(max_k, int)
        assert ("enable_gqa" in kw) == (self.gqa and k.shape[1] != q.shape[1])
        if not self.gqa:
            assert k.shape[1] == q.shape[1]  # the KV heads were repeated
        self.calls.append((q.shape, k.shape, cu_q.tolist(), max_q))
        lengths = (cu_q[1:] - cu_q[:-1]).tolist()
        out = _block_causal_oracle(
            q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], lengths, scale
        )
        return out[0].to(q.dtype)


@pytest.mark.parametrize("gqa", [True, False], ids=["torch-2.13-gqa", "torch-2.11-repeat"])
def test_the_kernel_path_hands_the_kernel_the_right_layout(monkeypatch, gqa):
    kernel = _StandInKernel(gqa)
    monkeypatch.setattr(
        attention, "_varlen", lambda: (attention.Kernel(kernel, {"window_size": (-1, 0)}, True, gqa), "")
    )
    monkeypatch.setattr(attention, "KERNEL_DEVICES", ("cpu",))
    q, k, v = _qkv()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # rotary leaves q/k fp32 under autocast
        out, _ = varlen_attention(None, q, k, v, None, scaling=0.25, **boundaries(LENGTHS))
    assert out.dtype == torch.bfloat16 and out.shape == (1, sum(LENGTHS), 4, 8)
    assert kernel.calls == [((30, 4, 8), (30, 2 if gqa else 4, 8), [0, 5, 14, 15, 27, 30], 12)]
    ref = _block_causal_oracle(q, k, v, LENGTHS, 0.25)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    # fp32 outside autocast: the kernel still gets 16-bit inputs, the caller gets fp32 back
    out32, _ = varlen_attention(None, q, k, v, None, scaling=0.25, **boundaries(LENGTHS))
    assert out32.dtype == torch.float32


def test_one_document_rows_take_sdpas_causal_path_unless_told(monkeypatch):
    kernel = _StandInKernel(True)
    monkeypatch.setattr(
        attention, "_varlen", lambda: (attention.Kernel(kernel, {"window_size": (-1, 0)}, True, True), "")
    )
    monkeypatch.setattr(attention, "KERNEL_DEVICES", ("cpu",))
    q, k, v = _qkv(lengths=[16])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        varlen_attention(None, q, k, v, None, **boundaries([16]))
        assert kernel.calls == []
        monkeypatch.setattr(attention, "SINGLE_DOCUMENT_SDPA", False)
        varlen_attention(None, q, k, v, None, **boundaries([16]))
    assert len(kernel.calls) == 1


def test_a_mask_or_several_rows_are_refused():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="reads document boundaries, not a mask"):
        varlen_attention(None, q, k, v, torch.ones(1, 30, dtype=torch.long))
    q2, k2, v2 = (torch.cat([t, t]) for t in (q, k, v))
    with pytest.raises(ValueError, match="a packed batch is one row, got 2 rows"):
        varlen_attention(None, q2, k2, v2, None, **boundaries(LENGTHS))


def _gpu(monkeypatch, capability=(9, 0), flash: str = "flash-attn is not installed"):
    """Pretend to be on a CUDA GPU of ``capability`` where flash-attn is ``flash`` ("" = imports)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(attention, "capability", lambda: capability)
    monkeypatch.setattr(attention, "flash_attn_missing", lambda: flash)


def test_auto_chooses_what_the_machine_can_run(monkeypatch):
    assert choose("sdpa") == ("sdpa", "as configured")
    impl, why = choose("auto")  # this CPU machine
    assert impl == NAME and "no CUDA" in why
    assert choose("auto", training=False)[0] == "sdpa"
    _gpu(monkeypatch)
    assert choose("auto") == (NAME, "flash-attn is not installed: torch's varlen FlashAttention kernel")
    _gpu(monkeypatch, flash="")
    assert choose("auto")[0] == choose("auto", training=False)[0] == "flash_attention_2"


def test_torch_without_a_usable_varlen_kernel_falls_back_to_sdpa_and_says_why(monkeypatch):
    """torch < 2.10 has no varlen module; a varlen_attn of a signature not known: sdpa, said."""
    _gpu(monkeypatch)
    monkeypatch.setattr(attention, "_varlen", lambda: (None, "torch 2.9.1 has no torch.nn.attention.varlen"))
    impl, why = choose("auto")
    assert (
        impl == "sdpa" and "torch 2.9.1 has no torch.nn.attention.varlen" in why and "dense block mask" in why
    )

    def odd(q, k, v, cu_q, cu_k, max_q, max_k, causal=True):
        pass

    assert (
        attention.kernel_for(odd)[0] is None
        and "neither window_size nor is_causal" in attention.kernel_for(odd)[1]
    )


def test_a_pre_ampere_gpu_gets_sdpa(monkeypatch):
    """FlashAttention kernels (flash-attn 2, torch's varlen) need sm_80: a T4 (sm_75) or a V100
    (sm_70) gets sdpa, flash-attn installed or not; an A100 (sm_80) the kernels."""
    for flash in ("", "flash-attn is not installed"):
        _gpu(monkeypatch, (7, 5), flash)
        impl, why = choose("auto")
        assert impl == "sdpa" and "sm_75" in why and "sm_80" in why
        assert choose("auto", training=False)[0] == "sdpa"
        assert "sm_75" in attention.varlen_available()
    _gpu(monkeypatch, (8, 0))
    assert choose("auto")[0] == NAME and attention.varlen_available() == ""


def _torch_2_10_varlen(kernel):
    """A stand-in with torch 2.10's signature: ``is_causal``, no ``scale``/``window_size``
    (the kernel then scales by 1/sqrt(d))."""

    def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
        assert is_causal is True
        return kernel(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, window_size=(-1, 0))

    return varlen_attn


def test_torch_2_10s_kernel_is_called_with_is_causal_and_the_scale_carried_by_q(monkeypatch):
    kernel = _StandInKernel(False)
    adapted, why = attention.kernel_for(_torch_2_10_varlen(kernel))
    assert why == "" and (adapted.causal, adapted.scale, adapted.gqa) == ({"is_causal": True}, False, False)
    monkeypatch.setattr(attention, "_varlen", lambda: (adapted, ""))
    monkeypatch.setattr(attention, "KERNEL_DEVICES", ("cpu",))
    q, k, v = _qkv()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = varlen_attention(None, q, k, v, None, scaling=0.25, **boundaries(LENGTHS))
    assert len(kernel.calls) == 1 and kernel.calls[0][1] == (30, 4, 8)  # KV heads repeated
    torch.testing.assert_close(
        out.float(), _block_causal_oracle(q, k, v, LENGTHS, 0.25), rtol=2e-2, atol=2e-2
    )


def test_the_kernels_signature_is_read_once(monkeypatch):
    attention._varlen.cache_clear()
    calls = {"n": 0}
    real = attention.inspect.signature

    def counting(fn):
        calls["n"] += 1
        return real(fn)

    monkeypatch.setattr(attention.inspect, "signature", counting)
    monkeypatch.setattr(attention, "KERNEL_DEVICES", ())
    q, k, v = _qkv()
    for _ in range(3):
        varlen_attention(None, q, k, v, None, **boundaries(LENGTHS))
    attention._varlen.cache_clear()
    assert calls["n"] <= 1


def test_flash_attn_that_fails_to_import_falls_back_to_limo_varlen_with_the_reason(
    monkeypatch, tmp_path, caplog
):
    """A flash-attn built for another torch is found (find_spec) but fails at import (an
    undefined symbol): auto takes limo_varlen and says so at WARNING; naming
    flash_attention_2 is refused with the reason, before any model loads."""
    import logging
    import sys

    from limo_exp.training.models import attn_implementation

    package = tmp_path / "flash_attn"
    package.mkdir()
    (package / "__init__.py").write_text(
        "raise ImportError('flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "flash_attn", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(attention, "capability", lambda: (9, 0))
    why = attention.flash_attn_missing()
    assert "fails to import (ImportError: flash_attn_2_cuda.so: undefined symbol" in why
    with caplog.at_level(logging.INFO, logger="limo_exp.training.models"):
        assert attn_implementation("auto", training=True) == NAME
        assert attn_implementation("auto") == "sdpa"
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and "undefined symbol" in warned[0].getMessage()
    assert "torch's varlen FlashAttention kernel" in warned[0].getMessage()
    with pytest.raises(
        ValueError, match="model.attn_implementation=flash_attention_2: flash-attn is installed but fails"
    ):
        choose("flash_attention_2")


def test_flash_attention_2_on_packed_rows_reads_nothing_back(tiny_model, monkeypatch):
    """transformers' mask code under flash_attention_2 detects packing by reading the position
    ids on the device (``find_packed_sequence_indices``: a host sync per forward). With the
    boundaries from the host it does not, and the losses are unchanged. flash-attn cannot run
    here: transformers' flash_attention_2 entry is pointed at limo_varlen's CPU path."""
    from transformers import AttentionInterface

    from limo_exp.training import loss, syncs
    from limo_exp.training.models import load
    from limo_exp.training.sft_data import Tokenized
    from limo_exp.training.steps import batch_tensors

    monkeypatch.setitem(AttentionInterface._global_mapping, "flash_attention_2", varlen_attention)
    rows = [
        Tokenized(list(range(5, 25)), [-100] * 5 + list(range(10, 25))),
        Tokenized([7] * 9, [-100] * 3 + [7] * 6),
    ]
    losses = {}
    for impl in ("sdpa", "flash_attention_2"):
        torch.manual_seed(0)
        model, tok = load(str(tiny_model))
        model.config._attn_implementation = impl
        loss.install(model)
        tensors = batch_tensors(rows, tok, True, True, "cpu")
        check = syncs.HostReads("error") if impl != "sdpa" else syncs.HostReads("count")
        with check:
            out = model(**tensors, use_cache=False)
            out.loss.backward()
        losses[impl] = out.loss.item()
    assert losses["flash_attention_2"] == pytest.approx(losses["sdpa"], rel=1e-5)


def _model(impl: str):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM._from_config(cfg, attn_implementation=impl)


def _sum_ce(logits, ids):
    return F.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")


def test_packed_equals_unpacked_through_the_model_losses_and_gradients(monkeypatch):
    """The whole model with limo_varlen on one packed row: each document's loss and every
    gradient equal those of the documents run one by one; and no [L x L] mask is built."""
    from transformers import masking_utils

    ids = torch.randint(3, 128, (1, sum(LENGTHS)), generator=torch.Generator().manual_seed(1))
    alone = _model("sdpa")
    total, start = 0.0, 0
    for n in LENGTHS:
        part = ids[:, start : start + n]
        total = total + _sum_ce(alone(input_ids=part, use_cache=False).logits, part)
        start += n
    total.backward()

    packed = _model(NAME)
    for name in ("sdpa_mask", "eager_mask", "find_packed_sequence_indices"):  # would build a mask
        monkeypatch.setattr(masking_utils, name, lambda *a, **k: pytest.fail("a mask was built"))
    seen = []
    real = attention.varlen_attention

    def spy(module, q, k, v, attention_mask, **kw):
        seen.append(attention_mask)
        return real(module, q, k, v, attention_mask, **kw)

    from transformers import AttentionInterface

    AttentionInterface.register(NAME, spy)
    try:
        pos = torch.cat([torch.arange(n) for n in LENGTHS])[None]
        logits = packed(input_ids=ids, position_ids=pos, use_cache=False, **boundaries(LENGTHS)).logits
    finally:
        attention.register()
    assert seen == [None, None]  # both layers, never a mask
    starts = torch.tensor([0] + LENGTHS[:-1]).cumsum(0)
    keep = torch.ones(sum(LENGTHS) - 1, dtype=torch.bool)
    keep[starts[1:] - 1] = False  # the last token of a document does not predict the next one's first
    loss = F.cross_entropy(logits[0, :-1][keep], ids[0, 1:][keep], reduction="sum")
    loss.backward()
    torch.testing.assert_close(loss, total, rtol=1e-5, atol=1e-5)
    for (name, a), b in zip(alone.named_parameters(), packed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_counting_attention_work_tells_dense_masks_from_per_document_work():
    from limo_exp.training.attention_work import READS_BOUNDARIES

    assert NAME.startswith(READS_BOUNDARIES)  # the counter knows limo_varlen by name
    ids = torch.randint(3, 128, (1, sum(LENGTHS)), generator=torch.Generator().manual_seed(1))
    pos = torch.cat([torch.arange(n) for n in LENGTHS])[None]
    needed = sum(n * n for n in LENGTHS)
    for impl, ratio, masks in ((NAME, 1.0, 0), ("sdpa", 30 * 30 / needed, 2)):
        model = _model(impl)
        with count_attention(model) as work:
            model(input_ids=ids, position_ids=pos, use_cache=False, **boundaries(LENGTHS))
        assert (work.calls, work.needed, work.masks) == (2, 2 * needed, masks)
        assert work.ratio == pytest.approx(ratio)
