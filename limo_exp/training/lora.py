"""LoRA: the same training loop on low-rank adapters (``train=lora``).

The adapters are merged into the base weights when the model is saved, so a LoRA checkpoint
is a plain Hugging Face folder that lm-eval (hf or vLLM) reads like any other.
"""

from __future__ import annotations

from limo_exp.config import LoraConfig


def wrap(model, lora: LoraConfig):
    """Freeze ``model`` and add LoRA adapters of rank ``lora.r`` on ``lora.target_modules``
    ("all-linear" or module names)."""
    import peft

    config = peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, config)


def merged(model):
    """The plain model with adapters folded in (a no-op for a model without adapters)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def trainable_fraction(model) -> float:
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / total
