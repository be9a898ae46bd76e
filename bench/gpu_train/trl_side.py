"""TRL's side of the GPU training bench, as its users run it: ``SFTTrainer`` padding-free
(``bench_trl.trl_trainer``: the sequences in limo-exp's order, completion-only loss, fp32 weights
with bf16 autocast), Liger's kernels (``use_liger_kernel``) where they run, and a varlen
attention kernel for its one row a step.

TRL 1.16's padding-free collator flattens a step's sequences into one row and hands the model
``position_ids`` (restarting at each sequence), ``cu_seq_lens_q`` / ``cu_seq_lens_k`` (int32
offsets, computed on the CPU) and ``max_length_q`` / ``max_length_k`` (Python ints): the keyword
arguments FlashAttention's transformers integration reads, and the ones limo-exp's
``limo_varlen`` reads. flash-attn cannot be installed on the lent GPU machines, so TRL's model
gets ``limo_varlen`` (``training.attention``, registered with transformers on import) as its
``attn_implementation``: the same kernel as limo-exp's side. The setting ``trl_16k_mixed_sdpa``
keeps the configuration of before (``sdpa``: a dense block mask over the ~53k-token row) as a
second figure."""

from __future__ import annotations

import os
import tempfile

from gpu_train.limo_side import WATCHED

DEFAULT_ATTENTION = "limo_varlen"


def run_trl(model, rows, per_step, seq, gpu):
    import trl
    from bench_trl import in_limo_order, trl_trainer

    from limo_exp.training.loss import liger_missing
    from limo_exp.training.models import build_tiny_tokenizer

    os.environ.setdefault("WANDB_DISABLED", "true")
    liger = not liger_missing()  # CUDA (or Triton's CPU interpreter) and liger-kernel installed
    ckpt = max(len(t.input_ids) for t in rows) > 8192
    with tempfile.TemporaryDirectory() as out:
        trainer = trl_trainer(
            model,
            in_limo_order(rows),
            build_tiny_tokenizer(),
            out,
            batch=per_step,
            max_steps=len(rows) // per_step,
            lr=5e-6,
            gpu=gpu,
            gradient_checkpointing=ckpt,
            use_liger_kernel=liger,
        )
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    recipe = {
        "trl": trl.__version__,
        "padding_free": trainer.args.padding_free,
        "liger_layer_kernels": liger,
        "gradient_checkpointing": ckpt,
    }
    after = {n: p.detach().cpu() for n, p in model.named_parameters() if n.endswith(WATCHED)}
    return losses, recipe, after
