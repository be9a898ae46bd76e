"""A Qwen2 whose end-of-turn token comes when a workload wants it (the GPU eval bench's model,
loaded through ``trust_remote_code``: this file is copied beside the weights).

A random model never ends its answer on its own terms, and a benchmark of sampled decoding needs
responses of known lengths. ``config.forced_end = {"eos", "start", "end", "temperature"}`` sets
the end-of-turn logit from the position the model is at (``position_ids``: the row's own
position, left padding excluded, in every engine): below ``start`` it cannot be drawn; from
``start`` on its probability after dividing by ``temperature`` is ``1 / (end - position)`` (a
hazard under which the end position is uniform on [start, end)); at ``end - 1`` it is certain.
Every other logit is the model's own, so the rest of the distribution, top-p and the sampler run
as they would. ``start`` past the model's positions: the token never comes (fixed lengths)."""

from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

NEVER = -1.0e4


class ForcedEndConfig(Qwen2Config):
    """Qwen2's config under a model type of its own, so that ``AutoTokenizer`` takes the
    tokenizer the folder holds (``tokenizer_config.json``) instead of Qwen2's BPE class."""

    model_type = "limo_forced_end_qwen2"


class ForcedEndQwen2(Qwen2ForCausalLM):
    config_class = ForcedEndConfig

    # the arguments ``generate`` looks for in the signature: position ids from the mask, and the
    # prefill's logits of the last position only (the whole [rows x prompt x vocab] otherwise)
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, logits_to_keep=0, **kwargs):
        out = super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        rule = getattr(self.config, "forced_end", None)
        if not rule:
            return out
        logits = out.logits
        n = logits.shape[1]
        if position_ids is None:  # not seen in the engines; the cache's columns stand in
            cpos = kwargs.get("cache_position")
            position_ids = (cpos if cpos is not None else torch.arange(n, device=logits.device))[None]
        pos = position_ids[:, -n:].to(logits.device).float().expand(logits.shape[0], n)
        eos, t = rule["eos"], float(rule["temperature"])
        scaled = logits.float() / t
        scaled[..., eos] = float("-inf")
        rest = torch.logsumexp(scaled, dim=-1)  # log of the other tokens' mass at temperature t
        left = (rule["end"] - pos).clamp(min=1.0)
        hazard = (1.0 / left).clamp(max=1.0 - 1e-6)
        value = t * (torch.log(hazard) - torch.log1p(-hazard) + rest)
        value = torch.where(pos < rule["start"], torch.full_like(value, NEVER), value)
        value = torch.where(pos >= rule["end"] - 1, torch.full_like(value, -NEVER), value)
        logits = logits.clone()
        logits[..., eos] = value.to(logits.dtype)
        out.logits = logits
        return out
