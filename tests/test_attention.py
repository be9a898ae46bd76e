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
    monkeypatch.setattr(attention, "_varlen", lambda: (kernel, gqa))
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
    monkeypatch.setattr(attention, "_varlen", lambda: (kernel, True))
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


def test_auto_chooses_what_the_machine_can_run(monkeypatch):
    import importlib.util

    assert choose("sdpa") == ("sdpa", "as configured")
    impl, why = choose("auto")  # this CPU machine
    assert impl == NAME and "no CUDA" in why
    assert choose("auto", training=False)[0] == "sdpa"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "flash_attn" else real(n, *a))
    assert choose("auto")[0] == NAME  # torch >= 2.10: its own varlen kernel
    monkeypatch.setattr(attention, "_varlen", lambda: (None, False))
    impl, why = choose("auto")
    assert impl == "sdpa" and "dense block mask" in why and "torch.nn.attention.varlen" in why
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: object() if n == "flash_attn" else real(n, *a)
    )
    assert choose("auto")[0] == "flash_attention_2"


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
    ids = torch.randint(3, 128, (1, sum(LENGTHS)), generator=torch.Generator().manual_seed(1))
    pos = torch.cat([torch.arange(n) for n in LENGTHS])[None]
    needed = sum(n * n for n in LENGTHS)
    for impl, ratio, masks in ((NAME, 1.0, 0), ("sdpa", 30 * 30 / needed, 2)):
        model = _model(impl)
        with count_attention(model) as work:
            model(input_ids=ids, position_ids=pos, use_cache=False, **boundaries(LENGTHS))
        assert (work.calls, work.needed, work.masks) == (2, 2 * needed, masks)
        assert work.ratio == pytest.approx(ratio)
