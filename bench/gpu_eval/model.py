"""The GPU eval bench's model: a random-init Qwen2 of the bench's shape at Qwen2.5's vocabulary
(151,936 tokens) and positions (32,768), saved once, with a word-level tokenizer of the same
vocabulary (one word, one token: a prompt of n words is n tokens) and ``forced_end.py`` beside
the weights. ``variant`` makes a second folder of the same weights (links) with another
``forced_end`` rule: the end never drawn (fixed lengths) or lengths spread over a range."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
VOCAB = 151936
POSITIONS = 32768
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # pad, (unused), end of turn


def tokenizer(vocab: int = VOCAB):
    """A word-level tokenizer of ``vocab`` tokens: the three ChatML specials, then ``w3`` ...;
    words split on whitespace, decoded joined by spaces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {s: i for i, s in enumerate(SPECIALS)}
    words.update({f"w{i}": i for i in range(len(SPECIALS), vocab)})
    tok = Tokenizer(models.WordLevel(words, unk_token=SPECIALS[0]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # tokens joined by spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SPECIALS[2], pad_token=SPECIALS[0])
    fast.add_special_tokens({"additional_special_tokens": [SPECIALS[1]]})
    return fast


def build(shape: dict, out: Path, dtype, device: str, vocab: int = VOCAB) -> Path:
    """Save a random model of ``shape`` at ``vocab`` tokens, its tokenizer and ``forced_end.py``
    into ``out``; no end rule yet (``variant`` sets one)."""
    import torch
    from gpu_eval.forced_end import ForcedEndConfig, ForcedEndQwen2

    tok = tokenizer(vocab)
    config = ForcedEndConfig(
        **shape,
        vocab_size=vocab,
        max_position_embeddings=POSITIONS,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        rope_theta=1e6,
    )
    config.auto_map = {
        "AutoConfig": "forced_end.ForcedEndConfig",
        "AutoModelForCausalLM": "forced_end.ForcedEndQwen2",
    }
    torch.manual_seed(0)
    with torch.device(device):
        model = ForcedEndQwen2(config).to(dtype)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    shutil.copy(HERE / "forced_end.py", out / "forced_end.py")
    del model
    return out


def variant(base: Path, out: Path, *, start: int, end: int, temperature: float) -> Path:
    """``base``'s weights and tokenizer (linked) under a config whose end-of-turn token comes at a
    position uniform on [start, end) (``start`` >= the positions: never)."""
    out.mkdir(parents=True, exist_ok=True)
    for f in base.iterdir():
        if f.name != "config.json" and not (out / f.name).exists():
            os.symlink(f, out / f.name)
    config = json.loads((base / "config.json").read_text())
    config["forced_end"] = {
        "eos": config["eos_token_id"],
        "start": start,
        "end": end,
        "temperature": temperature,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def prompts(n: int, lo: int, hi: int, vocab: int = VOCAB, seed: int = 0) -> list[str]:
    """``n`` prompts of random words, ``lo``-``hi`` tokens each (one token a word)."""
    rng = random.Random(seed)
    return [" ".join(f"w{rng.randrange(3, vocab)}" for _ in range(rng.randint(lo, hi))) for _ in range(n)]
