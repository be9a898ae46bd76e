"""Peak memory and speed of the SFT loss: Hugging Face's full logits vs limo-exp's target-only,
chunked loss (limo_exp/training/loss.py), one forward + backward of a packed row.

    python bench/bench_loss.py [--seq 4096] [--vocab 49152] [--hidden 256] [--layers 2]

Memory: each side in its own fresh process (peak RSS growth over the model's own footprint).
Speed: both sides in one process, interleaved after a warm-up. Writes results/bench/loss.json.
CPU only here; the same script runs on CUDA (peak from torch.cuda.max_memory_allocated).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make(args, impl: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from limo_exp.training import loss

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 2,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=args.seq,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).to(args.device)
    if impl == "target_only":
        loss.install(model)
    ids = torch.randint(0, args.vocab, (1, args.seq), device=args.device)
    labels = ids.clone()
    labels[0, : args.seq // 8] = -100  # a prompt: 1/8 of the row is not a target
    return model, {"input_ids": ids, "labels": labels, "use_cache": False}


def step(model, batch) -> float:
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    return out.loss.item()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def memory_child(args, impl: str) -> dict:
    """Run in a fresh process: the model's footprint, then one step's peak."""
    import torch

    model, batch = make(args, impl)
    step(model, {**batch, "input_ids": batch["input_ids"][:, :16], "labels": batch["labels"][:, :16]})
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
        loss = step(model, batch)
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        base = peak_rss_mb()
        loss = step(model, batch)
        peak = peak_rss_mb()
    return {"impl": impl, "loss": loss, "step_peak_mb": round(peak - base, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=49152)  # SmolLM2's
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "loss.json"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(memory_child(args, args.child)))
        return

    shape = ["--seq", str(args.seq), "--vocab", str(args.vocab), "--hidden", str(args.hidden)]
    shape += ["--layers", str(args.layers), "--device", args.device]
    memory = {}
    for impl in ("hf", "target_only"):
        proc = subprocess.run(
            [sys.executable, __file__, *shape, "--child", impl], capture_output=True, text=True, check=True
        )
        memory[impl] = json.loads(proc.stdout.strip().splitlines()[-1])

    models = {impl: make(args, impl) for impl in ("hf", "target_only")}
    for m, b in models.values():  # warm-up
        step(m, b)
    seconds = {impl: [] for impl in models}
    for _ in range(args.repeats):  # interleaved
        for impl, (m, b) in models.items():
            t = time.perf_counter()
            step(m, b)
            seconds[impl].append(time.perf_counter() - t)
    result = {
        "shape": {"seq": args.seq, "vocab": args.vocab, "hidden": args.hidden, "layers": args.layers},
        "device": args.device,
        "machine": platform.platform(),
        "loss": {k: v["loss"] for k, v in memory.items()},
        "step_peak_mb": {k: v["step_peak_mb"] for k, v in memory.items()},
        "full_logits_mb_fp32": round(args.seq * args.vocab * 4 / 2**20, 1),
        "tokens_per_s_median": {k: round(args.seq / sorted(v)[len(v) // 2], 1) for k, v in seconds.items()},
    }
    result["memory_ratio_hf_over_target_only"] = round(
        result["step_peak_mb"]["hf"] / max(result["step_peak_mb"]["target_only"], 1e-9), 2
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
