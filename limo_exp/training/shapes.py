"""A model's sizes without its weights: where its config and tokenizer can be read with no
download or conversion, its config (local files, else ``model.shape``), and its parameter count
from a meta-device build. ``limo-exp plan`` prices a sweep with these."""

from __future__ import annotations

from pathlib import Path

from limo_exp.config import ModelConfig
from limo_exp.training.models import resolve


def local_files(model: ModelConfig, cache_dir: str | Path) -> str | None:
    """Where the model's config and tokenizer are read without a download or a conversion: its
    folder (a path, a tiny model, built in a second; a GGUF model once converted), a hub id that the
    local hub cache holds; None otherwise. No weights are read."""
    cache_dir = Path(cache_dir)
    if model.source == "path":
        return model.path if (Path(model.path) / "config.json").exists() else None
    if model.source == "tiny_random":
        return resolve(model, cache_dir)
    if model.source == "gguf_wheel":
        out = cache_dir / "models" / model.name
        return str(out) if (out / "config.json").exists() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model.hub_id, "config.json", revision=model.revision)
    except Exception:  # no huggingface_hub, a malformed id: not in the cache
        return None
    return model.hub_id if isinstance(found, str) else None


def model_config(model: ModelConfig, cache_dir: str | Path):
    """The model's transformers config and where it came from, without weights: its local files
    (``local_files``), else ``model.shape`` (config.json's sizes copied into the model's YAML);
    (None, why) when neither is there."""
    from transformers import AutoConfig

    where = local_files(model, cache_dir)
    if where is not None:
        kw = {"local_files_only": True, "revision": model.revision} if model.source == "hub" else {}
        return AutoConfig.from_pretrained(where, trust_remote_code=model.trust_remote_code, **kw), where
    if model.shape:
        shape = dict(model.shape)
        return AutoConfig.for_model(shape.pop("model_type"), **shape), f"model.shape of {model.name}"
    return None, f"model {model.name}: no local config.json and no model.shape"


def count_params(config) -> int:
    """Parameters of a model of ``config``, built on the meta device (no memory, no weights): what
    ``sum(p.numel() for p in model.parameters())`` gives once it is loaded. A deep stack of equal
    decoder layers is counted from its one- and two-layer copies (exact, and a second not five)."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    def built(layers: int | None) -> int:
        c = config
        if layers is not None:
            c = copy.deepcopy(config)
            c.num_hidden_layers = layers
        with torch.device("meta"):
            return sum(p.numel() for p in AutoModelForCausalLM.from_config(c).parameters())

    layers = getattr(config, "num_hidden_layers", None)
    if not layers or layers <= 2:
        return built(None)
    one, two = built(1), built(2)
    return one + (layers - 1) * (two - one)
