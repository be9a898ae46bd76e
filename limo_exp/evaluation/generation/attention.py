"""The attention of the static decoding: ``limo_gqa``, registered in transformers'
``AttentionInterface`` and set on the model by ``install``.

With a ``limo_kv`` keyword (``kv.DecodeKV`` or ``kv.PrefillKV``, passed through the model's
forward) it writes the new keys and values into the static decoder's KV store and attends over the
view it gets back with torch's ``scaled_dot_product_attention``, the queries of the heads that
share a KV head packed together ([b, kv heads, groups, d] when decoding): each KV head is read
once, never repeated per query head (transformers' sdpa path repeats K and V under
``torch.compile``: ``repeat_kv``; SDPA's own ``enable_gqa`` falls back to a kernel that repeats them
when a mask is given on CUDA). Without ``limo_kv`` (``generate``, scoring) it is transformers' sdpa.
"""

from __future__ import annotations

import torch

NAME = "limo_gqa"


def grouped_sdpa(query, key, value, mask, scale):
    """SDPA of ``query`` [b, h, q, d] over ``key``/``value`` [b, kv, k, d] (h = kv * groups) under
    a bool ``mask`` [b or 1, 1, q, k]; returns [b, q, h, d]. One query a row (decoding): the
    queries of a KV head's group packed as [b, kv, groups, d], one call. A chunk (prefill): one
    call per group, each over the unrepeated K/V (the mask is never repeated either)."""
    b, h, q, d = query.shape
    kv_heads = key.shape[1]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if q == 1:
        out = sdpa(query.reshape(b, kv_heads, h // kv_heads, d), key, value, attn_mask=mask, scale=scale)
        return out.reshape(b, 1, h, value.shape[-1])
    grouped = query.unflatten(1, (kv_heads, h // kv_heads))  # [b, kv, groups, q, d]
    outs = [sdpa(grouped[:, :, g], key, value, attn_mask=mask, scale=scale) for g in range(grouped.shape[2])]
    return torch.stack(outs, 2).reshape(b, h, q, value.shape[-1]).transpose(1, 2).contiguous()


def gqa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    kv = kwargs.get("limo_kv")
    if kv is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if kwargs.get("sliding_window") is not None:
        raise ValueError("static decoding has no sliding-window attention: set eval.hf_decoding=eager")
    key, value = kv.update(module.layer_idx, key, value)
    return grouped_sdpa(query, key, value, attention_mask, scaling), None


def install(model) -> None:
    """Register ``limo_gqa`` (once) and make it the model's attention."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, gqa_attention)
    if model.config._attn_implementation != NAME:
        model.set_attn_implementation(NAME)
