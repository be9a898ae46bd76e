"""limo-exp's training loop against TRL's SFTTrainer on the same work, side by side in one process.

    pip install -e '.[bench]'   # trl
    python bench/bench_trl.py [--examples 64] [--batch 8] [--repeats 2] [--pool-dir ../shared/data/pools]

Same random-init model (Qwen2 shape, SmolLM2's tokenizer and vocabulary), same MATH-train
examples tokenised once by limo-exp (loss on the assistant's tokens only; TRL gets them as
input_ids + completion_mask), same order (TRL with a sequential sampler over limo-exp's seeded
order), same global batch, lr, cosine schedule, AdamW, clipping and gradient checkpointing
(limo-exp's rule for ``max_length``: off here; TRL's own default is on), fp32. limo-exp: packed
token-budget rows, the target-only loss and the attention ``attention.choose("auto")`` gives
training (on a CPU ``limo_varlen``: each packed document alone); TRL: padding-free, ``sdpa`` (a
block mask over its one row a step). Runs alternate after a one-step warm-up; reports real
(example) tokens/s per side, their ratio, the largest difference between the two loss curves,
and per side the query-key pairs attention computed over those per-document attention needs
(``attention_flops_ratio``, counted in the warm-up step: 1.0 means no work across documents).
Writes results/bench/trl.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def in_limo_order(data: list, seed: int = 0) -> list[dict]:
    """TRL's rows (input_ids + completion_mask) in limo-exp's first-epoch order for ``seed``."""
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    return [
        {"input_ids": data[i].input_ids, "completion_mask": [int(x != -100) for x in data[i].labels]}
        for i in order
    ]


def trl_trainer(
    model, rows: list[dict], tok, out: str, *, batch: int, max_steps: int, lr: float, gpu=False, **extra
):
    """TRL's ``SFTTrainer`` doing limo-exp's work: ``rows`` in the given order (a sequential
    sampler), padding-free, completion-only loss, cosine schedule without warm-up, AdamW,
    clipping at 1; fp32 weights with bf16 autocast on a GPU. ``extra``: more ``SFTConfig`` fields,
    and ``callbacks``."""
    import trl
    from datasets import Dataset
    from torch.utils.data import SequentialSampler

    class InOrder(trl.SFTTrainer):
        def _get_train_sampler(self, *a, **k):
            return SequentialSampler(self.train_dataset)

    callbacks = extra.pop("callbacks", None)
    args = trl.SFTConfig(
        output_dir=out,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        max_steps=max_steps,
        learning_rate=lr,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_length=None,  # the rows are tokenised (and truncated) by limo-exp already
        padding_free=True,
        completion_only_loss=True,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=not gpu,
        bf16=gpu,
        seed=0,
        dataloader_num_workers=0,
        **extra,
    )
    return InOrder(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        callbacks=callbacks,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8, help="sequences per optimizer step (both sides)")
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--pool-dir", default=str(REPO.parent / "shared" / "data" / "pools"))
    ap.add_argument("--cache-dir", default=os.environ.get("LIMO_CACHE_DIR", str(REPO / "outputs" / "cache")))
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "trl.json"))
    args = ap.parse_args()

    import torch
    import trl
    from accelerate import Accelerator
    from omegaconf import OmegaConf
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from limo_exp.config import LIMO_INSTRUCTION, ModelConfig, TrainConfig
    from limo_exp.data.pools import load_pool
    from limo_exp.data.records import Example
    from limo_exp.training import attention, models
    from limo_exp.training.batching import prepare
    from limo_exp.training.loop import train
    from limo_exp.training.steps import checkpointing

    smol = ModelConfig.from_dict(
        OmegaConf.to_container(OmegaConf.load(REPO / "conf/model/smollm2_135m_instruct.yaml"))
    )
    tok = models.load_tokenizer(models.resolve(smol, args.cache_dir))
    pool = load_pool("math_train", data_dir=args.pool_dir, n=args.examples)
    examples = [Example(r.id, r.problem, r.solutions[0].text, r.answer, "human") for r in pool]
    steps = len(examples) // args.batch
    cfg = TrainConfig(
        lr=1e-5,
        max_steps=steps,
        global_batch_size=args.batch,
        max_tokens_per_micro_batch=args.batch * args.max_length,
        max_length=args.max_length,
        instruction=LIMO_INSTRUCTION,
    )
    data = prepare(examples, tok, cfg)
    order = list(range(len(data)))
    random.Random(0).shuffle(order)  # limo-exp's first epoch order for seed 0
    real = sum(len(data[i].input_ids) for i in order[: steps * args.batch])

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    init = Qwen2ForCausalLM(config)
    n_params = sum(p.numel() for p in init.parameters())
    rows = in_limo_order(data)
    ours, ours_why = attention.choose("auto")
    ckpt = checkpointing(cfg)  # TRL's SFTConfig turns it on by default: the same on both sides
    work = {}  # side: the attention work of its warm-up step

    def counted(side: str, model):
        return contextlib.nullcontext() if side in work else attention.count_attention(model)

    def run_ours(max_steps: int):
        model = copy.deepcopy(init)
        model.set_attn_implementation(ours)
        t = time.perf_counter()
        with counted("limo_exp", model) as seen:
            res = train(
                model,
                tok,
                data,
                TrainConfig(**{**cfg.to_dict(), "max_steps": max_steps, "lora": None}),
                Accelerator(cpu=True),
            )
        work.setdefault("limo_exp", seen)
        return time.perf_counter() - t, res.losses

    def run_trl(max_steps: int):
        model = copy.deepcopy(init)  # sdpa
        with tempfile.TemporaryDirectory() as out, counted("trl", model) as seen:
            trainer = trl_trainer(
                model,
                rows,
                tok,
                out,
                batch=args.batch,
                max_steps=max_steps,
                lr=cfg.lr,
                gradient_checkpointing=ckpt,
            )
            t = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - t
        work.setdefault("trl", seen)
        return seconds, [h["loss"] for h in trainer.state.log_history if "loss" in h]

    run_ours(1), run_trl(1)  # warm-up, one step: the attention work is counted here
    times: dict[str, list[float]] = {"limo_exp": [], "trl": []}
    curves = {}
    for _ in range(args.repeats):  # interleaved
        for side, fn in (("limo_exp", run_ours), ("trl", run_trl)):
            seconds, losses = fn(steps)
            times[side].append(seconds)
            curves[side] = losses
    tps = {side: round(real / sorted(v)[len(v) // 2], 1) for side, v in times.items()}
    result = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "trl_version": trl.__version__,
        "model_params": n_params,
        "examples": len(data),
        "steps": steps,
        "global_batch": args.batch,
        "real_tokens_per_run": real,
        "seconds": times,
        "real_tokens_per_s_median": tps,
        "speedup_limo_exp_over_trl": round(tps["limo_exp"] / tps["trl"], 2),
        "attention": {"limo_exp": ours, "trl": init.config._attn_implementation},
        "attention_reason": ours_why,
        "gradient_checkpointing": ckpt,
        "attention_flops_ratio": {side: round(w.ratio, 3) for side, w in work.items()},
        "attention_work": {
            side: {"computed": w.computed, "needed": w.needed, "calls": w.calls, "masks": w.masks}
            for side, w in work.items()
        },
        "losses": curves,
        "max_loss_diff": max(abs(a - b) for a, b in zip(curves["limo_exp"], curves["trl"])),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
