"""What one decoder layer keeps for the backward pass per token, at Qwen2.5-1.5B's layer shape:
the memory ``train.checkpoint_skip_layers`` trades for not recomputing a layer.

    python bench/bench_activations.py [--tokens 2048,4096] [--layers 2]

A random model of the shape (small vocabulary), bf16 autocast on the CPU as training runs on a
GPU, sdpa attention; the tensors autograd saves during one forward pass are counted once per
storage. The per-token figure is the slope between two lengths, divided by the layers (so the
weights' bf16 copies, saved once whatever the length, drop out). Writes results/bench/activations.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def saved_bytes(model, tokens: int) -> int:
    import torch

    storages: dict[int, int] = {}

    def keep(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    ids = torch.randint(3, model.config.vocab_size, (1, tokens))
    with (
        torch.autocast("cpu", dtype=torch.bfloat16),
        torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t),
    ):
        model.model(input_ids=ids, use_cache=False)
    return sum(storages.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", default="2048,4096")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "activations.json"))
    args = ap.parse_args()

    import torch
    from bench_gpu_train import SHAPES
    from transformers import Qwen2Config, Qwen2ForCausalLM

    shape = {**SHAPES["1.5b"], "num_hidden_layers": args.layers, "vocab_size": 1024}
    torch.manual_seed(0)
    model = Qwen2ForCausalLM._from_config(
        Qwen2Config(**shape, max_position_embeddings=16384), attn_implementation="sdpa"
    ).train()
    short, long = (int(t) for t in args.tokens.split(","))
    t0 = time.perf_counter()
    measured = {n: saved_bytes(model, n) for n in (short, long)}
    per_token_layer = (measured[long] - measured[short]) / (long - short) / args.layers
    result = {
        "machine": platform.platform(),
        "shape": shape,
        "saved_bytes": measured,
        "bytes_per_token_per_layer": round(per_token_layer),
        "gb_per_layer_at_16384_tokens": round(per_token_layer * 16384 / 1e9, 2),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
