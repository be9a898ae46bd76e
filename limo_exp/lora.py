"""LoRA: the same training loop on low-rank adapters (``train=lora``).

The adapters are merged into the base weights when the model is saved, so a LoRA checkpoint
is a plain Hugging Face folder that lm-eval (hf or vLLM) reads like any other.
"""

from __future__ import annotations


def wrap(model, *, r: int, alpha: int, dropout: float, target_modules: str | list[str]):
    """Freeze ``model`` and add LoRA adapters of rank ``r`` on ``target_modules`` ("all-linear" or names)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def merged(model):
    """The plain model with adapters folded in (a no-op for a model without adapters)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def trainable_fraction(model) -> float:
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / total
