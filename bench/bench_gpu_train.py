"""Training at the paper's scale, limo-exp against TRL, side by side in one process (meant for one
CUDA GPU; ``--shape tiny`` runs it on a CPU in seconds, as the test suite does).

    python bench/bench_gpu_train.py                  # random-init Qwen2.5-1.5B shape, 16,384-token rows
    python bench/bench_gpu_train.py --shape tiny --seq 256 --steps 2 --rounds 1

No download: a random model of the shape (the same seed for every setting), sequences of random
tokens whose first eighth is the prompt (labels -100) and the rest targets. Settings (issue 8's
table, fp32 master weights with bf16 autocast on both sides); limo-exp's model gets the attention
``attention.choose("auto")`` picks for training (``limo_varlen`` without flash-attn: each packed
document alone, no [L x L] mask) unless the setting names one. The issue's targets first:

- ``limo_16k_mixed``: limo-exp's default recipe (``train=full``: fp32 master, bf16 autocast, the
  loss ``auto`` picks, gradient checkpointing over 8k tokens) on 8 sequences of 1/16 to 3/4 of
  ``--seq`` tokens a step, packed by best-fit decreasing into rows of ``--seq`` tokens (what
  LIMO-like data looks like); ``trl_16k_mixed``: TRL on the same sequences in the same order;
- ``limo_16k`` / ``trl_16k``: one ``--seq``-token sequence per step;
- ``limo_b8`` / ``limo_b32`` (and ``trl_``): 8 / 32 short sequences (1/64 to 1/16 of ``--seq``)
  a step in one row;

TRL's side is ``SFTTrainer``, padding-free (one row per step, ``sdpa`` with a block mask),
completion-only loss, Liger's layer kernels when liger-kernel is installed. Then, once each:

- ``limo_16k_mixed_sdpa``: ``limo_16k_mixed`` with ``model.attn_implementation=sdpa`` (the dense
  block mask of before, side by side with the varlen kernel);
- ``limo_16k_varlen``: ``limo_16k`` through the varlen kernel (``attention.SINGLE_DOCUMENT_SDPA``
  off: a one-document row otherwise takes sdpa's causal path);
- ``limo_16k_liger_layers``: ``limo_16k`` with ``train.liger_layers=true`` (Liger's RMSNorm,
  SwiGLU and RoPE kernels, as TRL's side gets them; skipped where Liger cannot run; where it
  can, ``auto``, the default, has turned them on for every limo setting already);
- ``limo_16k_fsdp``: ``limo_16k`` under FSDP2 in this one process, as rank 0 of a one-process
  launch of conf/accelerate/fsdp.yaml with the Accelerator ``limo-exp run`` builds there
  (``make_accelerator``: fp32 weights sharded, gathered and reduced in fp32, bf16 autocast; on a
  CPU, FSDP over gloo, turned on by hand as the project does);

and only when named in ``--settings``: ``limo_16k_skip6`` (``train.checkpoint_skip_layers=6``),
``limo_16k_bf16_kahan`` (bf16 weights, Kahan-compensated AdamW), ``limo_16k_mixed_flex``
(``flex_attention``, CUDA only; it compiles for every new row length).

Each setting builds its model afresh, trains ``--steps`` + 1 steps at lr 5e-6 and times all but
the first (the warm-up): the device is synchronised when the first and the last optimizer step
are queued, and nowhere else, so a loop that queues work ahead is timed as it runs. ``--rounds``
(2) runs the targets' settings that many times, every other round in reverse order; the others
run once after them (``--extra-rounds``), so a run stopped early keeps the targets. Before each
setting the time it is expected to take is printed (the last round's, else an H200 table), and
with ``--budget`` a setting expected to end past it is skipped (said in its result). Reported per
setting: real (example) tokens/s, MFU over the device's bf16 peak counting 6 x params per token
(the issue's definition, ``mfu``) and with causal attention's FLOPs added
(``mfu_with_attention``), the query-key pairs attention computed over those per-document attention
needs (``attention_flops_ratio``, counted in the warm-up step: 1.0 means no work across
documents), peak memory, the share of entries of three weight matrices that training changed (for
bf16 + Kahan: of the weights the optimizer holds, stored value plus compensation), the losses,
the seconds it took; a setting that runs out of memory says so and the rest go on. ``summary``
holds each setting's rounds and their spread ((max - min) / max of tokens/s); ``targets`` the
issue's ratios with pass/fail. Also Liger's loss against the plain target-only loss (target: equal
to 1e-4) and ``train.liger_layers`` against the plain model, where Liger can run. Writes
results/bench/gpu_train.json after every setting.

Without CUDA, ``TRITON_INTERPRET=1`` (with liger-kernel, triton and numpy < 2.4 installed) runs
Liger's kernels in Triton's CPU interpreter (see triton_interpret.py): the Liger paths then run
and can be checked on ``--shape tiny``, at interpreter speed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import platform
import random
import tempfile
import time
import traceback
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
# name: (side, data, sequences per step, extra TrainConfig fields and the bench's own keys: attn,
# single_document_sdpa, fsdp)
SETTINGS = {
    "limo_16k_mixed": ("limo", "mixed", 8, {}),
    "trl_16k_mixed": ("trl", "mixed", 8, {}),
    "limo_16k": ("limo", "long", 1, {}),
    "trl_16k": ("trl", "long", 1, {}),
    "limo_b8": ("limo", "short", 8, {}),
    "trl_b8": ("trl", "short", 8, {}),
    "limo_b32": ("limo", "short", 32, {}),
    "trl_b32": ("trl", "short", 32, {}),
    "limo_16k_mixed_sdpa": ("limo", "mixed", 8, {"attn": "sdpa"}),
    "limo_16k_varlen": ("limo", "long", 1, {"attn": "limo_varlen", "single_document_sdpa": False}),
    "limo_16k_liger_layers": ("limo", "long", 1, {"liger_layers": True}),
    "limo_16k_fsdp": ("limo", "long", 1, {"fsdp": True}),
    "limo_16k_skip6": ("limo", "long", 1, {"checkpoint_skip_layers": 6}),
    "limo_16k_bf16_kahan": ("limo", "long", 1, {"master_dtype": "bfloat16", "optimizer": "adamw_kahan"}),
    "limo_16k_mixed_flex": ("limo", "mixed", 8, {"attn": "flex_attention"}),
}
# the targets: limo-exp against TRL on the same work, each pair side by side
PAIRS = (
    ("limo_16k_mixed", "trl_16k_mixed"),
    ("limo_16k", "trl_16k"),
    ("limo_b8", "trl_b8"),
    ("limo_b32", "trl_b32"),
)
TARGETED = [name for pair in PAIRS for name in pair]
EXTRA = ["limo_16k_mixed_sdpa", "limo_16k_varlen", "limo_16k_liger_layers", "limo_16k_fsdp"]
DEFAULT = TARGETED + EXTRA  # skip6, bf16_kahan and mixed_flex (compiles per row length) only when named
GOALS = {"mixed_mfu": 0.30, "mixed_speedup": 3.0, "speedup": 1.2, "peak_ratio": 1.10, "round_spread": 0.15}
# expected seconds on an H200 (1.5b shape, 16,384-token rows): (model, setup and first-use
# compiles; one step), from the 2026-12-04 run (sdpa; shared/gpu/2026-12-04-h200) and the varlen
# probe; trl_16k_mixed (one ~51k-token row with a dense mask a step) is a guess. A later round
# uses what the setting took in an earlier one.
H200_SECONDS = {
    "limo_16k_mixed": (10, 2.0),
    "trl_16k_mixed": (15, 15.0),
    "limo_16k": (10, 0.75),
    "trl_16k": (15, 0.6),
    "limo_b8": (10, 0.45),
    "trl_b8": (15, 0.2),
    "limo_b32": (10, 1.9),
    "trl_b32": (15, 1.6),
    "limo_16k_mixed_sdpa": (10, 5.8),
    "limo_16k_varlen": (10, 0.85),
    "limo_16k_liger_layers": (10, 0.65),
    "limo_16k_fsdp": (20, 0.8),
    "limo_16k_skip6": (10, 0.75),
    "limo_16k_bf16_kahan": (10, 0.75),
    "limo_16k_mixed_flex": (120, 3.0),
}
WATCHED = ("layers.0.mlp.down_proj.weight", "layers.0.self_attn.q_proj.weight", "embed_tokens.weight")


def lengths(data: str, n: int, seq: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    if data == "long":
        return [seq] * n
    lo, hi = (seq // 16, 3 * seq // 4) if data == "mixed" else (seq // 64, seq // 16)
    return [rng.randint(lo, hi) for _ in range(n)]


def sequences(data: str, per_step: int, steps: int, seq: int, vocab: int):
    import torch

    from limo_exp.training.sft_data import IGNORE, Tokenized

    g = torch.Generator().manual_seed(1)
    out = []
    for n in lengths(data, per_step * steps, seq):
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        prompt = max(1, n // 8)
        out.append(Tokenized(ids, [IGNORE] * prompt + ids[prompt:]))
    return out


class Clock:
    """Times steps 2.. of a training run through a global optimizer hook: the device is synchronised
    when the first and when the ``steps``-th optimizer step have been queued, nowhere else, so a
    loop that queues work ahead runs as it would. ``at_first`` is called at the first."""

    def __init__(self, gpu: bool, steps: int, at_first=lambda: None):
        self.gpu, self.steps, self.at_first = gpu, steps, at_first
        self.calls, self.times = 0, []

    def __enter__(self):
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._handle = register_optimizer_step_post_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()

    def _hook(self, *_):
        self.calls += 1
        if self.calls in (1, self.steps):
            if self.gpu:
                import torch

                torch.cuda.synchronize()
            self.times.append(time.perf_counter())
        if self.calls == 1:
            self.at_first()

    @property
    def seconds(self) -> float:
        if self.calls != self.steps or len(self.times) != 2:
            raise RuntimeError(f"expected {self.steps} optimizer steps, saw {self.calls}")
        return self.times[1] - self.times[0]


class Skipped(Exception):
    """A setting that cannot run here; its message says why."""


def run_limo(model, rows, per_step, seq, extra, gpu, fsdp):
    from accelerate.utils import DistributedType

    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import train
    from limo_exp.training.optim import KahanAdamW
    from limo_exp.training.recipe import make_accelerator
    from limo_exp.training.steps import checkpointing

    long = max(len(t.input_ids) for t in rows) > seq // 16
    cfg = TrainConfig(
        lr=5e-6,
        global_batch_size=per_step,
        max_tokens_per_micro_batch=seq if long else per_step * (seq // 16),
        max_length=seq if long else seq // 16,
        gradient_checkpointing="auto",
        max_steps=len(rows) // per_step,
        lora=None,
        **extra,
    )
    sharded = None
    with one_process_fsdp(gpu) if fsdp else contextlib.nullcontext():
        accelerator = make_accelerator(gpu)  # limo-exp run's: the recipe's numerics, FSDP where launched so
        if fsdp and accelerator.distributed_type != DistributedType.FSDP:
            raise Skipped(f"Accelerate gives no FSDP here ({accelerator.distributed_type.value})")
        res = train(model, _Pad(), rows, cfg, accelerator)
        opt = getattr(res.optimizer, "optimizer", res.optimizer)  # Accelerate's wrapper holds it
        if isinstance(opt, KahanAdamW):  # bf16 weights: what the optimizer holds is weight + compensation
            after = {
                n: KahanAdamW.effective(p, opt.state[p])
                for n, p in model.named_parameters()
                if n.endswith(WATCHED)
            }
        else:  # under FSDP the whole weight (one process: its one shard)
            after = {n: _whole(p.detach()) for n, p in model.named_parameters() if n.endswith(WATCHED)}
        after = {n: w.cpu() for n, w in after.items()}
        if fsdp:  # read before the context puts Accelerate's state back
            plugin = accelerator.state.fsdp_plugin
            sharded = {
                "config": "conf/accelerate/fsdp.yaml",
                "version": plugin.fsdp_version,
                "processes": accelerator.num_processes,
                "reshard_after_forward": plugin.reshard_after_forward,
                "cpu_ram_efficient_loading": plugin.cpu_ram_efficient_loading,
                "mixed_precision_policy": repr(plugin.mixed_precision_policy),
                "autocast": accelerator.mixed_precision,
            }
    recipe = {
        "master_dtype": cfg.master_dtype,
        "optimizer": cfg.optimizer,
        "loss": res.loss_impl,
        "gradient_checkpointing": checkpointing(cfg),
        "micro_batch_tokens": cfg.max_tokens_per_micro_batch,
        "liger_layers": getattr(res, "liger_layers", cfg.liger_layers),
        "checkpoint_skip_layers": cfg.checkpoint_skip_layers,
    }
    if sharded:
        recipe["fsdp"] = sharded
    return res.losses, recipe, after


def _whole(t):
    """A DTensor (FSDP2's sharded weight) gathered whole; any other tensor as it is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def fsdp_environment() -> dict:
    """What ``accelerate launch --config_file conf/accelerate/fsdp.yaml`` puts in the environment of
    each process for FSDP: ACCELERATE_USE_FSDP and the FSDP_* variables of its fsdp_config."""
    import yaml

    conf = yaml.safe_load((REPO / "conf" / "accelerate" / "fsdp.yaml").read_text())
    env = {"ACCELERATE_USE_FSDP": "true"}
    for key, value in conf["fsdp_config"].items():
        name = key.removeprefix("fsdp_").upper()
        name = "TRANSFORMER_CLS_TO_WRAP" if name == "TRANSFORMER_LAYER_CLS_TO_WRAP" else name
        env[f"FSDP_{name}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@contextlib.contextmanager
def one_process_fsdp(gpu: bool):
    """This process as rank 0 of a one-process FSDP launch of conf/accelerate/fsdp.yaml (FSDP2): the
    launcher's environment (a free port) and Accelerate's state started afresh, so that
    ``make_accelerator`` builds the Accelerator ``limo-exp run`` gets there (fp32 weights sharded,
    gathered and reduced in fp32, bf16 autocast on a GPU; on a CPU, over gloo, FSDP turned on by
    hand as the project does). Afterwards the process group, the environment and Accelerate's
    state are put back, for the settings after this one."""
    import socket

    import torch.distributed as dist
    from accelerate.state import AcceleratorState, GradientState

    saved = dict(os.environ)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0",
        WORLD_SIZE="1",
        LOCAL_RANK="0",
        LOCAL_WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    os.environ.update(fsdp_environment())
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    had_group = dist.is_initialized()
    try:
        yield
    finally:
        if gpu:
            import torch

            torch.cuda.synchronize()
        if dist.is_initialized() and not had_group:
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved)
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


class _Pad:  # limo-exp's rows are packed: no padding is ever made
    pad_token_id = 0


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
    recipe = {"trl": trl.__version__, "liger_layer_kernels": liger, "gradient_checkpointing": ckpt}
    after = {n: p.detach().cpu() for n, p in model.named_parameters() if n.endswith(WATCHED)}
    return losses, recipe, after


@contextlib.contextmanager
def modeling_kept():
    """Put back whatever a setting changed in transformers' qwen2 module (Liger's kernels replace
    its classes and functions, for every model built later), so no setting inherits another's."""
    from transformers.models.qwen2 import modeling_qwen2

    saved = dict(vars(modeling_qwen2))
    try:
        yield
    finally:
        for name in set(vars(modeling_qwen2)) - set(saved):
            delattr(modeling_qwen2, name)
        for name, value in saved.items():
            if getattr(modeling_qwen2, name, None) is not value:
                setattr(modeling_qwen2, name, value)


@contextlib.contextmanager
def single_document_sdpa(value):
    """``attention.SINGLE_DOCUMENT_SDPA`` set to ``value`` (None: left alone), put back after."""
    from limo_exp.training import attention

    kept = attention.SINGLE_DOCUMENT_SDPA
    if value is not None:
        attention.SINGLE_DOCUMENT_SDPA = value
    try:
        yield
    finally:
        attention.SINGLE_DOCUMENT_SDPA = kept


def measure(name, args, config, gpu, device) -> dict:
    import torch
    from transformers import Qwen2ForCausalLM

    from limo_exp.hardware import gpu as gpu_spec
    from limo_exp.training import attention
    from limo_exp.training.optim import changed_fraction

    side, data, per_step, extra = SETTINGS[name]
    extra = dict(extra)
    requested = extra.pop("attn", "auto" if side == "limo" else "sdpa")  # TRL's side: sdpa, as before
    single, fsdp = extra.pop("single_document_sdpa", None), extra.pop("fsdp", False)
    impl, why = attention.choose(requested)
    if side == "trl":
        why = "TRL's side as before: sdpa, a block mask from the position ids of its padding-free row"
    if "checkpoint_skip_layers" in extra:  # at most the model's layers (the tiny shape has 2)
        extra["checkpoint_skip_layers"] = min(extra["checkpoint_skip_layers"], config.num_hidden_layers)
    rows = sequences(data, per_step, args.steps + 1, args.seq, config.vocab_size)
    gc.collect()
    if gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    with torch.device("cuda" if gpu else "cpu"):
        # a copy: TRL's trainer writes the tokenizer's special tokens into the model's config, and
        # the embedding's init zeroes the pad token's row, so a shared config would make every
        # setting after a TRL one start from different weights
        model = Qwen2ForCausalLM._from_config(copy.deepcopy(config), attn_implementation=impl)
    if extra.get("master_dtype") == "bfloat16":
        model = model.to(torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    # kept on the CPU, so they are not in the setting's peak memory
    before = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if n.endswith(WATCHED)}
    with contextlib.ExitStack() as stack:
        # Liger swaps modeling_qwen2's RMSNorm, MLP and RoPE for the process
        stack.enter_context(modeling_kept())
        stack.enter_context(single_document_sdpa(single))
        counting = contextlib.ExitStack()  # the attention work of the warm-up step, read on the host
        work = counting.enter_context(attention.count_attention(model))
        stack.callback(counting.close)
        clock = stack.enter_context(Clock(gpu, args.steps + 1, at_first=counting.close))
        if side == "limo":
            losses, recipe, after = run_limo(model, rows, per_step, args.seq, extra, gpu, fsdp)
        else:
            losses, recipe, after = run_trl(model, rows, per_step, args.seq, gpu)
        seconds = clock.seconds  # steps 2.. (the first is the warm-up)
    recipe["attention"], recipe["attention_reason"] = impl, why
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    timed = [len(rows[i].input_ids) for i in order[per_step:]]
    real = sum(timed)
    cfg = config
    attention_flops = sum(6 * cfg.hidden_size * cfg.num_hidden_layers * s * (s + 1) for s in timed)
    peak = gpu_spec(device).bf16_flops if gpu_spec(device) else None
    flops = 6 * n_params * real
    result = {
        "side": side,
        "data": data,
        "sequences_per_step": per_step,
        "real_tokens_per_step": round(real / args.steps),
        "recipe": recipe,
        "real_tokens_per_s": round(real / seconds, 1),
        "mfu": round(flops / seconds / peak, 4) if peak else None,
        "mfu_with_attention": round((flops + attention_flops) / seconds / peak, 4) if peak else None,
        "attention_flops_ratio": round(work.ratio, 3),
        "attention_work": {
            "computed": work.computed,
            "needed": work.needed,
            "calls": work.calls,
            "masks": work.masks,
        },
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
        "changed_fraction": {n: changed_fraction(w.float(), after[n].float()) for n, w in before.items()},
        "losses": losses,
    }
    del model, after, before
    return result


def liger_check(config, gpu: bool) -> dict:
    """Liger's fused loss against the plain target-only loss, on one 8,192-token row on CUDA (512
    under Triton's CPU interpreter), in fp32 and under bf16 autocast."""
    import torch

    from limo_exp.training import loss

    if loss.liger_missing():
        return {"skipped": loss.liger_missing()}
    device = "cuda" if gpu else "cpu"
    torch.manual_seed(0)
    n, h, v = (8192 if gpu else 512), config.hidden_size, config.vocab_size
    hidden = torch.randn(1, n, h, device=device, requires_grad=True)
    weight = (0.02 * torch.randn(v, h, device=device)).requires_grad_()
    labels = torch.randint(0, v, (1, n), device=device)
    labels[:, : n // 8] = -100
    result = {"targets": int((labels[:, 1:] != -100).sum())}
    for precision in ("fp32", "bf16_autocast"):
        out = {}
        for kernel in ("torch", "liger"):
            hidden.grad = weight.grad = None
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision != "fp32"):
                value = loss.target_cross_entropy(hidden, weight, labels, kernel=kernel)
            value.backward()
            out[kernel] = (value.item(), {"hidden": hidden.grad.clone(), "weight": weight.grad.clone()})
        result[precision] = _compare(out["torch"], out["liger"], "torch", "liger")
    return result


def _compare(a, b, name_a, name_b) -> dict:
    """Relative differences of two (loss, {name: gradient}) results."""
    (la, ga), (lb, gb) = a, b
    diffs = [((ga[k] - gb[k]).norm() / ga[k].norm()).item() for k in ga]
    return {
        f"loss_{name_a}": la,
        f"loss_{name_b}": lb,
        "loss_rel_diff": abs(la - lb) / abs(la),
        "grad_rel_diff_max": max(diffs),
    }


def layers_of(config, n: int):
    """``config`` with its first ``n`` decoder layers (``layer_types`` cut to match: transformers
    >= 5.17 refuses a config whose layer types outnumber its layers)."""
    fields = {**config.to_dict(), "num_hidden_layers": n}
    if fields.get("layer_types"):
        fields["layer_types"] = fields["layer_types"][:n]
    return type(config)(**fields)


def liger_layers_check(config, gpu: bool) -> dict:
    """limo-exp's ``train.liger_layers`` (Liger's RMSNorm, SwiGLU, RoPE) against the model as it
    is: the loss and every gradient of one forward/backward, on two layers of the shape (1,024
    tokens on CUDA, 128 under Triton's CPU interpreter), in fp32 and under bf16 autocast."""
    import torch
    from transformers import Qwen2ForCausalLM

    from limo_exp.training import loss

    if loss.liger_missing():
        return {"skipped": loss.liger_missing()}
    device = "cuda" if gpu else "cpu"
    small = layers_of(config, 2)
    n = 1024 if gpu else 128
    ids = torch.randint(3, config.vocab_size, (1, n), generator=torch.Generator().manual_seed(2)).to(device)
    result = {"tokens": n, "layers": 2}
    if not gpu:  # seen: Triton 3.6's interpreter multiplies two bf16 blocks wrong (by ~1e34)
        result["bf16_autocast"] = {"skipped": "Triton's CPU interpreter gets bf16 arithmetic wrong"}
    for precision in ("fp32", "bf16_autocast") if gpu else ("fp32",):
        out = {}
        for liger in (False, True):
            with modeling_kept():
                torch.manual_seed(0)
                with torch.device(device):
                    model = Qwen2ForCausalLM._from_config(small, attn_implementation="sdpa")
                if liger:
                    loss.liger_layers(model)
                with torch.autocast(device, dtype=torch.bfloat16, enabled=precision != "fp32"):
                    value = model(input_ids=ids, labels=ids).loss
                value.backward()
            out[liger] = (value.item(), {k: p.grad.float().clone() for k, p in model.named_parameters()})
            del model
        result[precision] = _compare(out[False], out[True], "plain", "liger_layers")
    return result


def main(argv: list[str] | None = None) -> dict:
    started = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    ap.add_argument("--seq", type=int, default=16384, help="tokens per row (the micro-batch budget)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per setting (after one warm-up step)")
    ap.add_argument(
        "--rounds", type=int, default=2, help="runs of the targets' settings, alternating the order"
    )
    ap.add_argument(
        "--extra-rounds",
        type=int,
        default=None,
        help="runs of the other settings, after the targets' (default: 1, or --rounds when --settings is given)",
    )
    ap.add_argument(
        "--settings", default=",".join(DEFAULT), help=f"comma-separated, of {', '.join(SETTINGS)}"
    )
    ap.add_argument(
        "--budget", type=float, default=None, help="seconds: skip a setting expected to end past this"
    )
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "gpu_train.json"))
    args = ap.parse_args(argv)
    names = [s for s in args.settings.split(",") if s]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        ap.error(f"unknown setting(s) {unknown}; known: {', '.join(SETTINGS)}")
    if args.extra_rounds is None:
        args.extra_rounds = 1 if names == DEFAULT else args.rounds

    import importlib.metadata
    import importlib.util

    import torch
    from transformers import Qwen2Config

    from limo_exp.tracking.run_log import device_name
    from limo_exp.training.loss import liger_missing
    from limo_exp.training.shapes import count_params

    gpu = torch.cuda.is_available()
    device = device_name()
    interpreted = not gpu and os.environ.get("TRITON_INTERPRET") == "1" and not liger_missing()
    if interpreted:  # Liger's kernels on the CPU, in Triton's interpreter: results, not speed
        import triton_interpret

        triton_interpret.apply()
    config = Qwen2Config(
        **SHAPES[args.shape], max_position_embeddings=max(args.seq, 4096), tie_word_embeddings=True
    )
    has_trl = all(importlib.util.find_spec(m) is not None for m in ("trl", "datasets"))
    plan = schedule(names, args.rounds, args.extra_rounds)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    result = {
        "device": device,
        "machine": platform.platform(),
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
        "triton_interpreter": interpreted,
        "shape": args.shape,
        "params": count_params(config),
        "seq": args.seq,
        "steps": args.steps,
        "rounds": args.rounds,
        "extra_rounds": args.extra_rounds,
        "targets": {},
        "summary": {},
        "liger_vs_plain_loss": guarded(liger_check, config, gpu),
        "liger_layers_vs_plain": guarded(liger_layers_check, config, gpu),
        "best": {},
        "runs": runs,
    }
    table = H200_SECONDS if (args.shape, args.seq) == ("1.5b", 16384) and "H200" in device else {}
    known = [expected(n, args.steps, table, runs) for _, n in plan]
    if all(k is not None for k in known):
        print(f"{len(plan)} settings, ~{sum(k[0] for k in known):.0f} s expected", flush=True)
    for r, name in plan:
        elapsed = time.perf_counter() - started
        guess = expected(name, args.steps, table, runs)
        says = f"~{guess[0]:.0f} s expected ({guess[1]})" if guess else "no estimate yet"
        print(f"[round {r + 1}] {name}: {says}; {elapsed:.0f} s in", flush=True)
        skip = why_skip(name, gpu, has_trl, liger_missing())
        if not skip and args.budget and guess and elapsed + guess[0] > args.budget:
            left = max(args.budget - elapsed, 0)
            skip = f"time budget: ~{guess[0]:.0f} s expected, {left:.0f} s of {args.budget:.0f} left"
        if skip:
            runs[name].append({"skipped": skip, "round": r + 1})
            print(f"[round {r + 1}] {name}: skipped: {skip}", flush=True)
            write(result, args.out)
            continue
        t0 = time.perf_counter()
        try:
            got = measure(name, args, config, gpu, device)
        except Skipped as e:
            got = {"skipped": str(e)}
        except torch.OutOfMemoryError:
            got = {"error": "out of memory"}
        except Exception as e:  # one setting's failure must not lose the others' figures
            got = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        gc.collect()
        if gpu:
            torch.cuda.empty_cache()
        got |= {"round": r + 1, "seconds": round(time.perf_counter() - t0, 1)}
        runs[name].append(got)
        print(
            f"[round {r + 1}] {name}: "
            f"{got.get('real_tokens_per_s', got.get('error', got.get('skipped')))} tokens/s, "
            f"mfu {got.get('mfu')}, attention x{got.get('attention_flops_ratio')}, "
            f"peak {got.get('peak_memory_gb')} GB ({got['seconds']:.0f} s)",
            flush=True,
        )
        write(result, args.out)  # after every setting: a run stopped early keeps what it measured
    write(result, args.out)
    shown = ("device", "shape", "targets", "summary", "liger_vs_plain_loss", "liger_layers_vs_plain")
    print(json.dumps({k: result[k] for k in shown}, indent=2))
    print(f"{time.perf_counter() - started:.0f} s in all", flush=True)
    return result


def schedule(names: list[str], rounds: int, extra_rounds: int) -> list[tuple[int, str]]:
    """(round, setting) in the order they run: the targets' settings ``rounds`` times (every other
    round reversed, so each pair is interleaved), then the others ``extra_rounds`` times."""
    plan = []
    for group, times in (
        ([n for n in names if n in TARGETED], rounds),
        ([n for n in names if n not in TARGETED], extra_rounds),
    ):
        for r in range(times):
            plan += [(r, n) for n in (group if r % 2 == 0 else group[::-1])]
    return plan


def expected(name: str, steps: int, table: dict, runs: dict) -> tuple[float, str] | None:
    """Seconds ``name`` is expected to take, and from what: its last measured round, else the
    table's (setup, step) figures; None when neither is known."""
    took = [t["seconds"] for t in runs.get(name, []) if "real_tokens_per_s" in t]
    if took:
        return took[-1], "as its last round"
    if name in table:
        setup, step = table[name]
        return setup + (steps + 1) * step, "H200 table"
    return None


def why_skip(name: str, gpu: bool, has_trl: bool, liger: str) -> str:
    """Why ``name`` cannot run here, known before it starts ("" when it can)."""
    side, _, _, extra = SETTINGS[name]
    if side == "trl" and not has_trl:
        return "trl is not installed (pip install -e '.[bench]')"
    if extra.get("attn") == "flex_attention" and not gpu:
        return "flex_attention has no backward on CPU"
    if extra.get("liger_layers") and liger:
        return liger
    return ""


def guarded(fn, *args) -> dict:
    """``fn(*args)``, or what went wrong: a failure here must not stop the settings."""
    import torch

    try:
        return fn(*args)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def write(result: dict, path: str) -> None:
    summarize(result)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def summarize(result: dict) -> None:
    """``best`` (each setting's fastest round, with every round's tokens/s and their spread),
    ``summary`` (the same in one line a setting) and ``targets`` from ``runs``."""
    for name, tries in result["runs"].items():
        ok = [t for t in tries if "real_tokens_per_s" in t]
        if not ok:
            if tries:
                result["best"][name] = result["summary"][name] = tries[-1]
            continue
        figures = [t["real_tokens_per_s"] for t in ok]
        spread = round((max(figures) - min(figures)) / max(figures), 4) if len(figures) > 1 else None
        best = max(ok, key=lambda t: t["real_tokens_per_s"])
        result["best"][name] = {**best, "rounds_real_tokens_per_s": figures, "round_spread": spread}
        peaks = [t["peak_memory_gb"] for t in ok if t.get("peak_memory_gb") is not None]
        result["summary"][name] = {
            "real_tokens_per_s": best["real_tokens_per_s"],
            "rounds": figures,
            "round_spread": spread,
            "mfu": best["mfu"],
            "peak_memory_gb": max(peaks) if peaks else None,
            "attention": best["recipe"].get("attention"),
            "attention_flops_ratio": best.get("attention_flops_ratio"),
            "seconds": [t.get("seconds") for t in ok],
        }
    result["targets"] = targets(result["summary"])


def targets(summary: dict) -> dict:
    """The issue's targets from the summary: limo_16k_mixed at >= 30% MFU and >= 3x trl_16k_mixed;
    each other limo setting >= 1.2x its TRL twin (tokens/s of the best rounds, and each round's
    ratio), every limo setting's peak memory <= its twin's + 10%, every setting's two rounds
    within 15%. ``pass`` is None where a figure is missing (not run, failed, no CUDA)."""
    checks = {}

    def check(key, value, op, goal, **more):
        ok = None if value is None else (value >= goal if op == ">=" else value <= goal)
        checks[key] = {"value": value, "target": f"{op} {goal}", "pass": ok, **more}

    def get(name, key):
        return summary.get(name, {}).get(key)

    check("limo_16k_mixed_mfu", get("limo_16k_mixed", "mfu"), ">=", GOALS["mixed_mfu"])
    for limo, trl in PAIRS:
        a, b = get(limo, "real_tokens_per_s"), get(trl, "real_tokens_per_s")
        goal = GOALS["mixed_speedup"] if limo == "limo_16k_mixed" else GOALS["speedup"]
        rounds = [round(x / y, 3) for x, y in zip(get(limo, "rounds") or [], get(trl, "rounds") or [])]
        check(f"{limo}_vs_{trl}", round(a / b, 3) if a and b else None, ">=", goal, rounds=rounds)
        a, b = get(limo, "peak_memory_gb"), get(trl, "peak_memory_gb")
        check(f"{limo}_peak_vs_{trl}", round(a / b, 3) if a and b else None, "<=", GOALS["peak_ratio"])
    for name in TARGETED:
        check(f"{name}_round_spread", get(name, "round_spread"), "<=", GOALS["round_spread"])
    verdicts = [c["pass"] for c in checks.values()]
    return {
        "passed": f"{sum(v is True for v in verdicts)} of {len(verdicts)}",
        "failed": [k for k, c in checks.items() if c["pass"] is False],
        "unmeasured": [k for k, c in checks.items() if c["pass"] is None],
        "checks": checks,
    }


if __name__ == "__main__":
    main()
