"""Training at the paper's scale, limo-exp against TRL, side by side in one process (meant for one
CUDA GPU; ``--shape tiny`` runs it on a CPU in seconds, as the test suite does).

    python bench/bench_gpu_train.py                  # random-init Qwen2.5-1.5B shape, 16,384-token rows
    python bench/bench_gpu_train.py --shape tiny --seq 256 --steps 2 --rounds 1

No download: a random model of the shape (the same seed for every setting), sequences of random
tokens whose first eighth is the prompt (labels -100) and the rest targets. Settings (issue 8's
table, fp32 master weights with bf16 autocast on both sides):

- ``limo_16k``: limo-exp's default recipe (``train=full``: fp32 master, bf16 autocast, the loss
  ``auto`` picks, gradient checkpointing over 8k tokens) on one ``--seq``-token sequence per step;
- ``limo_16k_liger_layers``: the same with ``train.liger_layers=true`` (Liger's RMSNorm, SwiGLU and
  RoPE kernels, as TRL's side gets them; skipped where Liger cannot run);
- ``limo_16k_skip6``: the same with ``train.checkpoint_skip_layers=6`` (6 of 28 layers keep their
  activations instead of recomputing them: less compute, more memory);
- ``limo_16k_mixed``: the same recipe on 8 sequences of 1/16 to 3/4 of ``--seq`` tokens a step,
  packed by best-fit decreasing into rows of ``--seq`` tokens (what LIMO-like data looks like);
- ``limo_16k_mixed_flex``: the same with ``model.attn_implementation=flex_attention``: a block
  mask per document, so attention skips the blocks between packed sequences (sdpa gets a dense
  mask and computes them all); CUDA only (no backward on CPU); only when named in ``--settings``
  (it compiles the attention for every new row length);
- ``limo_16k_bf16_kahan``: bf16 weights with Kahan-compensated AdamW (the opt-in pure-bf16 mode);
- ``limo_b8`` / ``limo_b32``: 8 / 32 short sequences (1/64 to 1/16 of ``--seq``) a step in one row;
- ``trl_16k``, ``trl_b8``, ``trl_b32``: TRL's ``SFTTrainer`` on the same sequences in the same
  order, padding-free, completion-only loss, Liger's layer kernels when liger-kernel is installed.

Each setting builds its model afresh, trains ``--steps`` + 1 steps at lr 5e-6 and times all but
the first (the warm-up), with the device synchronised at each step's end. ``--rounds 2`` runs
the settings twice, the second time in reverse order (interleaved). Reported per setting: real
(example) tokens/s, MFU over the device's bf16 peak counting 6 x params per token (the issue's
definition, ``mfu``) and with causal attention's FLOPs added (``mfu_with_attention``), peak
memory, the share of entries of three weight matrices that training changed (for bf16 + Kahan:
of the weights the optimizer holds, stored value plus compensation), the losses; a
setting that runs out of memory says so and the rest go on. Also Liger's loss against the plain
target-only loss (target: equal to 1e-4) and ``train.liger_layers`` against the plain model, where
Liger can run. Writes results/bench/gpu_train.json.

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
# name: (side, data, sequences per step, extra TrainConfig fields)
SETTINGS = {
    "limo_16k": ("limo", "long", 1, {}),
    "trl_16k": ("trl", "long", 1, {}),
    "limo_16k_liger_layers": ("limo", "long", 1, {"liger_layers": True}),
    "limo_16k_skip6": ("limo", "long", 1, {"checkpoint_skip_layers": 6}),
    "limo_16k_mixed": ("limo", "mixed", 8, {}),
    "limo_16k_mixed_flex": ("limo", "mixed", 8, {"attn": "flex_attention"}),
    "limo_16k_bf16_kahan": ("limo", "long", 1, {"master_dtype": "bfloat16", "optimizer": "adamw_kahan"}),
    "limo_b8": ("limo", "short", 8, {}),
    "trl_b8": ("trl", "short", 8, {}),
    "limo_b32": ("limo", "short", 32, {}),
    "trl_b32": ("trl", "short", 32, {}),
}
# run unless --settings says otherwise; flex_attention compiles per row length, which may cost minutes
DEFAULT = [name for name in SETTINGS if name != "limo_16k_mixed_flex"]
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
    """Step-end times (device synchronised), and the step index each belongs to."""

    def __init__(self, gpu: bool):
        self.gpu, self.times = gpu, []

    def tick(self, *_):
        if self.gpu:
            import torch

            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def run_limo(model, rows, per_step, seq, extra, clock, gpu):
    from accelerate import Accelerator

    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import checkpointing, train
    from limo_exp.training.optim import KahanAdamW

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
    accelerator = Accelerator(cpu=not gpu, mixed_precision="bf16" if gpu else "no")
    res = train(model, _Pad(), rows, cfg, accelerator, lambda m, s: clock.tick())
    opt = getattr(res.optimizer, "optimizer", res.optimizer)  # Accelerate's wrapper holds it
    if isinstance(opt, KahanAdamW):  # bf16 weights: what the optimizer holds is weight + compensation
        after = {
            n: KahanAdamW.effective(p, opt.state[p])
            for n, p in model.named_parameters()
            if n.endswith(WATCHED)
        }
    else:
        after = {n: p.detach() for n, p in model.named_parameters() if n.endswith(WATCHED)}
    recipe = {
        "master_dtype": cfg.master_dtype,
        "optimizer": cfg.optimizer,
        "loss": res.loss_impl,
        "gradient_checkpointing": checkpointing(cfg),
        "micro_batch_tokens": cfg.max_tokens_per_micro_batch,
        "liger_layers": cfg.liger_layers,
        "checkpoint_skip_layers": cfg.checkpoint_skip_layers,
    }
    return res.losses, recipe, after


class _Pad:  # limo-exp's rows are packed: no padding is ever made
    pad_token_id = 0


def run_trl(model, rows, per_step, seq, clock, gpu):
    import trl
    from bench_trl import in_limo_order, trl_trainer
    from transformers import TrainerCallback

    from limo_exp.training.loss import liger_missing
    from limo_exp.training.models import build_tiny_tokenizer

    os.environ.setdefault("WANDB_DISABLED", "true")
    liger = not liger_missing()  # CUDA (or Triton's CPU interpreter) and liger-kernel installed
    ckpt = max(len(t.input_ids) for t in rows) > 8192

    class Tick(TrainerCallback):
        def on_step_end(self, *a, **k):
            clock.tick()

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
            callbacks=[Tick()],
        )
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    recipe = {"trl": trl.__version__, "liger_layer_kernels": liger, "gradient_checkpointing": ckpt}
    after = {n: p.detach() for n, p in model.named_parameters() if n.endswith(WATCHED)}
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


def measure(name, args, config, gpu, device) -> dict:
    import torch
    from transformers import Qwen2ForCausalLM

    from limo_exp.tracking.run_log import PEAK_BF16_FLOPS
    from limo_exp.training.optim import changed_fraction

    side, data, per_step, extra = SETTINGS[name]
    extra = dict(extra)
    attn = extra.pop("attn", "sdpa")
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
        model = Qwen2ForCausalLM._from_config(copy.deepcopy(config), attn_implementation=attn)
    if extra.get("master_dtype") == "bfloat16":
        model = model.to(torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    # kept on the CPU, so they are not in the setting's peak memory
    before = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if n.endswith(WATCHED)}
    clock = Clock(gpu)
    with modeling_kept():  # Liger swaps modeling_qwen2's RMSNorm, MLP and RoPE for the process
        if side == "limo":
            losses, recipe, after = run_limo(model, rows, per_step, args.seq, extra, clock, gpu)
            recipe["attention"] = model.config._attn_implementation
        else:
            losses, recipe, after = run_trl(model, rows, per_step, args.seq, clock, gpu)
    after = {n: w.cpu() for n, w in after.items()}
    seconds = clock.times[-1] - clock.times[0]  # steps 2.. (the first is the warm-up)
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    timed = [len(rows[i].input_ids) for i in order[per_step:]]
    real = sum(timed)
    cfg = config
    attention = sum(6 * cfg.hidden_size * cfg.num_hidden_layers * s * (s + 1) for s in timed)
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device), None)
    result = {
        "side": side,
        "data": data,
        "sequences_per_step": per_step,
        "real_tokens_per_step": round(real / args.steps),
        "recipe": recipe,
        "real_tokens_per_s": round(real / seconds, 1),
        "mfu": round(6 * n_params * real / seconds / peak, 4) if peak else None,
        "mfu_with_attention": round((6 * n_params * real + attention) / seconds / peak, 4) if peak else None,
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
    small = type(config)(**{**config.to_dict(), "num_hidden_layers": 2})
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    ap.add_argument("--seq", type=int, default=16384, help="tokens per row (the micro-batch budget)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per setting (after one warm-up step)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of every setting, alternating the order")
    ap.add_argument(
        "--settings", default=",".join(DEFAULT), help=f"comma-separated, of {', '.join(SETTINGS)}"
    )
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "gpu_train.json"))
    args = ap.parse_args(argv)
    names = [s for s in args.settings.split(",") if s]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        ap.error(f"unknown setting(s) {unknown}; known: {', '.join(SETTINGS)}")

    import importlib.util

    import torch
    from transformers import Qwen2Config

    from limo_exp.tracking.run_log import device_name
    from limo_exp.training.loss import liger_missing

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
    runs: dict[str, list[dict]] = {n: [] for n in names}
    result = {
        "device": device,
        "machine": platform.platform(),
        "torch": torch.__version__,
        "triton_interpreter": interpreted,
        "shape": args.shape,
        "params": sum(p.numel() for p in _meta_model(config).parameters()),
        "seq": args.seq,
        "steps": args.steps,
        "rounds": args.rounds,
        "liger_vs_plain_loss": guarded(liger_check, config, gpu),
        "liger_layers_vs_plain": guarded(liger_layers_check, config, gpu),
        "best": {},
        "runs": runs,
    }
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            if SETTINGS[name][0] == "trl" and not has_trl:
                runs[name].append({"skipped": "trl is not installed (pip install -e '.[bench]')"})
                continue
            if SETTINGS[name][3].get("attn") == "flex_attention" and not gpu:
                runs[name].append({"skipped": "flex_attention has no backward on CPU"})
                continue
            if SETTINGS[name][3].get("liger_layers") and liger_missing():
                runs[name].append({"skipped": liger_missing()})
                continue
            t0 = time.perf_counter()
            try:
                runs[name].append(measure(name, args, config, gpu, device))
            except torch.OutOfMemoryError:
                runs[name].append({"error": "out of memory"})
            except Exception as e:  # one setting's failure must not lose the others' figures
                runs[name].append(
                    {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
                )
            gc.collect()
            if gpu:
                torch.cuda.empty_cache()
            got = runs[name][-1]
            print(
                f"[round {r + 1}] {name}: {got.get('real_tokens_per_s', got.get('error'))} tokens/s, "
                f"mfu {got.get('mfu')}, peak {got.get('peak_memory_gb')} GB "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            write(result, args.out)  # after every setting: a run stopped early keeps what it measured
    write(result, args.out)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return result


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
    for name, tries in result["runs"].items():
        ok = [t for t in tries if "real_tokens_per_s" in t]
        if tries:
            result["best"][name] = max(ok, key=lambda t: t["real_tokens_per_s"]) if ok else tries[-1]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def _meta_model(config):
    import torch
    from transformers import Qwen2ForCausalLM

    with torch.device("meta"):
        return Qwen2ForCausalLM(config)


if __name__ == "__main__":
    main()
