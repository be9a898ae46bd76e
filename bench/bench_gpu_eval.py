"""Generation throughput of limo-exp's evaluation on whatever device is present (meant for one
CUDA GPU; ``--shape tiny`` runs on a CPU in seconds, as the test suite does).

    python bench/bench_gpu_eval.py                               # Qwen2.5-1.5B shape, hf at batch 1, 8, 64 (+ vLLM)
    python bench/bench_gpu_eval.py --shape tiny --batches 1,2 --limit 2 --max-gen-toks 8

No download: a random-init model of the shape with the tiny tokenizer (its vocabulary replaces
the 151,936 of Qwen2.5, so the output layer is smaller than the real model's), saved in bf16 on
CUDA. It runs the ``limo_paper`` tasks with ``--limit`` questions when ``--data-dir`` holds the
benchmark files, else ``limo_synthetic``. A random model never ends its answer, so every
response is ``--max-gen-toks`` tokens: new tokens per second of generation, per backend and batch
size, the figure the issue measured at 11 (batch 1), 87 (8) and 700 (64) on lm-eval's hf path.
Writes results/bench/gpu_eval.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import tempfile
from pathlib import Path

from bench_gpu_train import SHAPES as TRAIN_SHAPES  # the same shapes as the training bench

REPO = Path(__file__).resolve().parents[1]
SHAPES = {name: {k: v for k, v in shape.items() if k != "vocab_size"} for name, shape in TRAIN_SHAPES.items()}


def build(shape: str, out: Path, dtype) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from limo_exp.training.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    config = Qwen2Config(
        **SHAPES[shape],
        vocab_size=len(tok),
        max_position_embeddings=32768,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(dtype)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write(out: dict, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=2))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--limit", type=int, default=8, help="questions per task")
    ap.add_argument("--max-gen-toks", type=int, default=256)
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "eval"))
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "gpu_eval.json"))
    args = ap.parse_args(argv)

    import torch

    from limo_exp.config import EvalConfig, SyntheticConfig
    from limo_exp.evaluation.evaluate import evaluate
    from limo_exp.tracking.run_log import device_name

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    has_data = (Path(args.data_dir) / "math500.jsonl").exists()
    tasks = ["limo_paper"] if has_data else ["limo_synthetic"]
    out = {
        "device": device_name(),
        "machine": platform.platform(),
        "shape": args.shape,
        "tasks": tasks,
        "limit": args.limit,
        "max_gen_toks": args.max_gen_toks,
        "runs": [],
    }
    backends = ["hf"] + (["vllm"] if cuda and importlib.util.find_spec("vllm") else [])
    with tempfile.TemporaryDirectory() as tmp:
        model = str(build(args.shape, Path(tmp) / "model", dtype))
        for backend in backends:
            for batch in [int(b) for b in args.batches.split(",")] if backend == "hf" else [0]:
                suite = EvalConfig(
                    tasks=tasks,
                    data_dir=args.data_dir if has_data else None,
                    limit=args.limit,
                    backend=backend,
                    batch_size=max(batch, 1),
                    max_gen_toks=args.max_gen_toks,
                    store="off",
                    synthetic=SyntheticConfig(n=args.limit),
                )
                res = evaluate(
                    model, suite, device="cuda" if cuda else "cpu", dtype=str(dtype).removeprefix("torch.")
                )
                rates = {
                    k.split("/")[1]: v for k, v in res.metrics.items() if k.endswith("/gen_tokens_per_s")
                }
                tokens = sum(r.get("n_tokens", 0) for rows in res.samples.values() for r in rows)
                run = {
                    "backend": backend,
                    "batch_size": batch or "vllm",
                    "responses": res.metrics["eval/responses_generated"],
                    "generated_tokens": tokens,
                    "tokens_per_s_by_task": rates,
                }
                run["tokens_per_s"] = sum(rates.values()) / len(rates) if rates else None
                out["runs"].append(run)
                print(json.dumps(run), flush=True)
                write(out, args.out)  # after every run: a bench stopped at its limit keeps what it measured
    write(out, args.out)
    return out


if __name__ == "__main__":
    main()
