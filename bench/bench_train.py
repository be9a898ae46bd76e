"""Training and generation throughput of the demo model on this machine.

    python bench/bench_train.py [--model smollm2_135m_instruct|tiny_random] [--steps 3]

SFT: micro-batches of 4 sequences of exactly 512 tokens (loss on all of them), AdamW, one
warm-up step not timed. Generation: greedy, batch 1, 64 new tokens forced. Peak resident
memory of the process. Writes results/bench/train.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from omegaconf import OmegaConf

from limo_exp.config import ModelConfig, TrainConfig
from limo_exp.data.records import Example
from limo_exp.data.synthetic import make_pool
from limo_exp.training import models
from limo_exp.training.loop import train

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2_135m_instruct")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--cache-dir", default=os.environ.get("LIMO_CACHE_DIR", str(REPO / "outputs" / "cache")))
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "train.json"))
    args = ap.parse_args()

    model_cfg = ModelConfig.from_dict(
        OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / f"{args.model}.yaml"))
    )
    path = models.resolve(model_cfg, args.cache_dir)
    model, tok = models.load(path)
    n_params = sum(p.numel() for p in model.parameters())

    # long solutions, truncated to exactly 512 tokens: every row of a micro-batch is full
    pool = make_pool(64, seed=99)
    examples = [
        Example(r.id, r.problem, " ".join(s.text for s in r.solutions) * 4, r.answer, "long") for r in pool
    ]
    cfg = TrainConfig(lr=1e-5, max_steps=1, batch_size=4, max_length=512)
    acc = Accelerator(cpu=not torch.cuda.is_available())
    train(model, tok, examples[:4], cfg, acc)  # warm-up
    cfg.max_steps = args.steps
    res = train(model, tok, examples[4:], cfg, acc)

    model.eval()
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": pool[0].problem}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        model.generate(**prompt, max_new_tokens=4, do_sample=False)  # warm-up
        start = time.perf_counter()
        model.generate(**prompt, max_new_tokens=64, min_new_tokens=64, do_sample=False)
        gen_s = time.perf_counter() - start

    out = {
        "model": args.model,
        "parameters": n_params,
        "sft": {
            "micro_batch": "4 x 512",
            "steps": res.steps,
            "seconds": round(res.seconds, 2),
            "tokens_per_s": round(res.tokens_per_s, 1),
            "losses": [round(x, 4) for x in res.losses],
        },
        "generation": {
            "batch": 1,
            "new_tokens": 64,
            "seconds": round(gen_s, 2),
            "tokens_per_s": round(64 / gen_s, 1),
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
