"""limo-exp's default full recipe at the paper's scale, on whatever device is present (meant for one
CUDA GPU; ``--shape tiny`` runs it on a CPU in seconds, as the test suite does).

    python bench/bench_gpu_train.py                      # random-init Qwen2.5-1.5B shape, 16,384-token rows
    python bench/bench_gpu_train.py --shape tiny --seq 512 --steps 2

No download: a random model of the shape, rows of random tokens (the first eighth of each row
a prompt, the rest targets). Training as ``train=full`` runs it: fp32 master weights, bf16
autocast on CUDA, token-budget rows of ``--seq`` tokens, target-only loss, gradient
checkpointing over 8k tokens, lr 5e-6. One warm-up step, then ``--steps`` measured steps.
Reports example tokens/s, MFU (when the device's peak is known), peak memory, the share of
entries of three weight matrices that changed, and the losses. Writes results/bench/gpu_train.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAPES = {  # Qwen2.5-1.5B's, and a tiny one for a CPU smoke run
    "1.5b": {
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
    },
}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    ap.add_argument("--seq", type=int, default=16384, help="tokens per row (= the micro-batch budget)")
    ap.add_argument("--rows", type=int, default=1, help="rows per optimizer step (the global batch)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "gpu_train.json"))
    args = ap.parse_args(argv)

    import torch
    from accelerate import Accelerator
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from limo_exp.config import TrainConfig
    from limo_exp.tracking.run_log import device_name, model_flops_utilisation
    from limo_exp.training.loop import checkpointing, train
    from limo_exp.training.optim import changed_fraction
    from limo_exp.training.sft_data import IGNORE, Tokenized

    gpu = torch.cuda.is_available()
    torch.manual_seed(0)
    config = Qwen2Config(
        **SHAPES[args.shape], max_position_embeddings=max(args.seq, 4096), tie_word_embeddings=True
    )
    model = Qwen2ForCausalLM(config).to("cuda" if gpu else "cpu")  # fp32: the master weights
    n_params = sum(p.numel() for p in model.parameters())
    vocab, prompt = config.vocab_size, args.seq // 8
    rows = []
    for _ in range(args.rows * (args.steps + 1)):
        ids = torch.randint(3, vocab, (args.seq,)).tolist()
        rows.append(Tokenized(ids, [IGNORE] * prompt + ids[prompt:]))
    cfg = TrainConfig(
        lr=5e-6,
        global_batch_size=args.rows,
        max_tokens_per_micro_batch=args.seq,
        max_length=args.seq,
        gradient_checkpointing="auto",
    )
    accelerator = Accelerator(cpu=not gpu, mixed_precision="bf16" if gpu else "no")
    tok = types.SimpleNamespace(pad_token_id=0)  # rows are packed: no padding is ever made
    train(
        model,
        tok,
        rows[: args.rows],
        TrainConfig(**{**cfg.to_dict(), "max_steps": 1, "lora": None}),
        accelerator,
    )
    watched = {
        n: p.detach().clone()
        for n, p in model.named_parameters()
        if n.endswith(("0.mlp.down_proj.weight", "self_attn.q_proj.weight", "embed_tokens.weight"))
    }
    watched = dict(list(watched.items())[:3])
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    measured = TrainConfig(**{**cfg.to_dict(), "max_steps": args.steps, "lora": None})
    res = train(model, tok, rows[args.rows :], measured, accelerator)
    params = dict(model.named_parameters())
    device = device_name()
    result = {
        "device": device,
        "machine": platform.platform(),
        "torch": torch.__version__,
        "shape": args.shape,
        "params": n_params,
        "seq": args.seq,
        "rows_per_step": args.rows,
        "steps": args.steps,
        "recipe": {
            "master_dtype": cfg.master_dtype,
            "mixed_precision": "bf16" if gpu else "no",
            "loss": res.loss_impl,
            "gradient_checkpointing": checkpointing(cfg),
        },
        "real_tokens_per_s": round(res.real_tokens / res.seconds, 1),
        "mfu": model_flops_utilisation(n_params, res.real_tokens, res.seconds, 1, device),
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
        "changed_fraction": {n: changed_fraction(w, params[n].detach()) for n, w in watched.items()},
        "losses": res.losses,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
