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


# decoder-only families whose parameters follow from config.json alone (tests/test_plan.py checks
# each against a meta-device build): attention with biases on q/k/v?
DENSE_DECODERS = {"llama": False, "mistral": False, "qwen2": True}


def count_params(config) -> int:
    """Parameters of a model of ``config``: what ``sum(p.numel() for p in model.parameters())``
    gives once it is loaded. Dense decoders of ``DENSE_DECODERS`` by arithmetic on the config (no
    modeling code imported); others built on the meta device (no memory, no weights)."""
    kind = getattr(config, "model_type", "")
    if kind in DENSE_DECODERS:
        return _dense_decoder_params(config, DENSE_DECODERS[kind])
    return meta_params(config)


def _dense_decoder_params(c, qkv_bias: bool) -> int:
    h, heads = c.hidden_size, c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or h // heads
    kv = (getattr(c, "num_key_value_heads", None) or heads) * head_dim
    q = heads * head_dim
    attention = (
        h * q + 2 * h * kv + q * h + (q + 2 * kv if qkv_bias or getattr(c, "attention_bias", False) else 0)
    )
    if getattr(c, "attention_bias", False) and not qkv_bias:
        attention += h  # the output projection's bias too
    mlp = 3 * h * c.intermediate_size + (2 * c.intermediate_size + h if getattr(c, "mlp_bias", False) else 0)
    layer = attention + mlp + 2 * h  # two RMSNorms
    embeddings = c.vocab_size * h * (1 if c.tie_word_embeddings else 2)
    return embeddings + c.num_hidden_layers * layer + h  # the final norm


def meta_params(config) -> int:
    """Parameters counted on a meta-device build of ``config``: a deep stack of equal decoder
    layers from its one- and two-layer copies (exact, and a second not five)."""
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
