"""Device-hours of ``limo-exp plan``: training and generation time, each figure naming its source.

Training, in order: the store's seconds per token of earlier runs of the model on the device;
else FLOPs of the slowest rank at a utilisation of the device's bf16 peak. The FLOPs are the step
plan's own (``Train.critical_tokens`` / ``critical_squares``: in every step the rank with the most
work sets the step, as ``training/steps.py`` shares the sequences out), 6 x params a token plus
causal attention, and gradient checkpointing's recompute counted as one more forward of the
checkpointed layers (+1/3 of 6 x params x tokens and of the attention). The utilisation is, in
order: ``plan.mfu`` when set; the project's GPU bench (``results/bench/gpu_train*.json`` on that
device, not a faked one); else ``CALIBRATED``, fitted on the two published s1-32B runs (docs/plan.md).
Offloading parameters and optimizer to the CPU adds PCIe transfers and a CPU AdamW a step.

Generation: the store's tokens/s, else a roofline of decoding; its tokens come from
``commands/plan_points.py`` (the store's response lengths, else a prior, within the protocol's cap).
"""

from __future__ import annotations

import json
from pathlib import Path

from limo_exp.analysis.plan import Eval, Figure, Shape, Train
from limo_exp.analysis.plan_figures import History, _median, run_device
from limo_exp.hardware import gpu

BENCH = Path(__file__).resolve().parents[2] / "results" / "bench"
# Share of the bf16 peak, under the FLOP count above (slowest rank, recompute included), that the
# two published s1-32B runs imply with the synthetic s1K lengths of tests/test_plan_time.py:
# 16 H100s / 26 min (6.9 H100-h, the paper) -> 0.655; the s1 repository's 8-H100 log (5,269 s,
# 11.7 H100-h) -> 0.291. They disagree by 2.25x on the same work, so this, their geometric mean,
# puts each 1.5x off; it predicts s1's full-59K ablation (394 H100-h) at 1.10x (docs/plan.md).
CALIBRATED = 0.437
OFFLOADS = ("none", "cpu")  # none | cpu: parameters and optimizer states in host memory
PCIE_BYTES_PER_S = 20e9  # host <-> GPU a GPU, effective (PCIe Gen5 x16: 64 GB/s a direction, shared)
CPU_ADAM_PARAMS_PER_S = (
    1e9  # AdamW over fp32 states on the host, a process (assumed; DeepSpeed CPU Adam order)
)
# Characters a token of the model's tokenizer where none is here: Qwen2's BPE measured on the
# shared pools (math_train, gsm8k_train, aime_1983_2023: 10.76M characters, 4.06M tokens;
# results/LOG.md 2026-12-07). Per pool 2.52-2.89, per text (p10-p90) 2.0-3.4; SmolLM2's 2.35-2.81.
CHARS_PER_TOKEN = 2.65
CHARS_ERROR = "per pool 2.5-2.9 characters a token (-5%/+9% tokens), per text 2.0-3.4 (Qwen2 BPE, measured)"
# Expected tokens a response where neither the store nor the training chains say: a long-chain
# model's, per benchmark. ASSUMED, not measured: an order of magnitude (s1-32B's Figure 1 spans
# 512-8,192 thinking tokens on AIME24 under budget forcing; easier suites get shorter chains).
RESPONSE_PRIOR = {
    "aime24": 12000,
    "aime25": 12000,
    "amc23": 8000,
    "olympiadbench": 8000,
    "math500": 4000,
    "gpqa_diamond": 6000,
}
RESPONSE_PRIOR_OTHER = 2000


def train_hours(
    t: Train,
    shape: Shape,
    model: str,
    device: str,
    gpus: int,
    history: History,
    mfu: float | None = None,
    offload: str = "none",
) -> Figure:
    """Device-hours of training (all GPUs of the point). ``offload``: ``none`` or ``cpu``
    (parameters and optimizer states in host memory: ZeRO-3 / FSDP offload)."""
    if offload not in OFFLOADS:
        raise ValueError(f"offload={offload!r}: expected one of {', '.join(OFFLOADS)}")
    measured = _median(history.train_seconds_per_token.get((model, device)))
    if measured is not None:
        n = len(history.train_seconds_per_token[(model, device)])
        return Figure(t.seen_tokens * measured / 3600, f"store: {n} earlier run(s) of {model} on {device}")
    spec = gpu(device)
    if spec is None:
        return Figure(
            None, f"no earlier run of {model} on {device} in the store, and no data sheet for {device}"
        )
    use, where = utilisation(device, t.recompute > 0, mfu)
    flops, detail = rank_flops(t, shape, gpus)
    seconds = flops / (spec.bf16_flops * use)
    extra = ""
    if offload == "cpu":
        moved, adam = offload_seconds(t, shape, gpus)
        seconds += moved + adam
        extra = (
            f"; offload to the CPU: +{(moved + adam) / 3600:,.2g} h a GPU (PCIe at "
            f"{PCIE_BYTES_PER_S / 1e9:.0f} GB/s, CPU AdamW at {CPU_ADAM_PARAMS_PER_S / 1e9:.0f}B params/s, assumed)"
        )
    return Figure(
        seconds * gpus / 3600,
        f"FLOP model: 6 x {shape.params / 1e9:.2f}B params x tokens + attention, {detail}, at {use:.1%} "
        f"of {spec.name}'s {spec.bf16_flops / 1e12:.0f} TFLOP/s bf16 ({where}){extra}",
    )


def rank_flops(t: Train, shape: Shape, gpus: int) -> tuple[float, str]:
    """FLOPs of the slowest rank summed over the steps (the time the step plan takes), and what
    was counted. Without a per-rank count (``critical_tokens`` 0), a perfectly balanced share."""
    if t.critical_tokens:
        tokens, squares = t.critical_tokens, t.critical_squares
        share = t.seen_tokens / max(gpus, 1)
        what = f"the slowest rank of each step ({tokens / share:.2f}x the mean rank's tokens)"
    else:
        tokens, squares = t.seen_tokens / max(gpus, 1), t.attention_tokens2 / max(gpus, 1)
        what = "ranks assumed balanced"
    flops = 6 * shape.params * tokens + 6 * shape.layers * shape.hidden * squares
    if t.recompute:
        flops *= 1 + t.recompute / 3
        what += f", checkpointing's recompute +{t.recompute / 3:.0%}"
    return flops, what


def offload_seconds(t: Train, shape: Shape, gpus: int) -> tuple[float, float]:
    """Seconds a GPU adds under offload: each forward (and recompute) and backward brings the
    rank's shard of bf16 weights over PCIe and sends its gradients back (a micro-step), and the
    host runs AdamW on the shard once a step."""
    shard = shape.params / max(gpus, 1)
    passes = 2 + (1 if t.recompute else 0)
    forwards = max(t.forwards_per_rank, t.steps)
    moved = forwards * (passes * 2 * shard + 2 * shard) / PCIE_BYTES_PER_S
    return moved, t.steps * shard / CPU_ADAM_PARAMS_PER_S


def utilisation(device: str, checkpointing: bool, mfu: float | None) -> tuple[float, str]:
    """The share of the bf16 peak that prices FLOPs, and where it comes from."""
    if mfu is not None:
        return mfu, "plan.mfu"
    bench = bench_mfu(device, checkpointing)
    if bench is not None:
        return bench
    return CALIBRATED, "calibrated on the published s1-32B runs, docs/plan.md; plan.mfu to set it"


def bench_mfu(device: str, checkpointing: bool) -> tuple[float, str] | None:
    """The project's GPU bench on ``device`` (a real one: ``device_faked`` files are rehearsals):
    the best limo-exp setting's ``mfu_with_attention``, preferring one with the same
    checkpointing, converted to the FLOPs counted here (recompute included)."""
    best = None
    for path in sorted(BENCH.glob("gpu_train*.json")) if device != "cpu" else []:
        try:
            got = json.loads(path.read_text())
            if got.get("device_faked") or run_device(str(got.get("device", ""))) != device:
                continue
            for name, s in got.get("best", {}).items():
                value, ckpt = (
                    s.get("mfu_with_attention"),
                    bool(s.get("recipe", {}).get("gradient_checkpointing")),
                )
                if not name.startswith("limo") or not value or value <= 0:
                    continue
                value *= 4 / 3 if ckpt else 1  # the bench counts no recompute
                key = (ckpt == checkpointing, value)
                if best is None or key > best[0]:
                    where = f"GPU bench {path.name}: {got.get('device')}, commit {got.get('commit', '?')}, setting {name}"
                    best = (key, value, where)
        except (ValueError, AttributeError, TypeError):
            continue
    return None if best is None else (best[1], best[2])


def eval_hours(
    ev: Eval,
    shape: Shape,
    model: str,
    device: str,
    gpus: int,
    batch: int,
    history: History,
    bandwidth_use: float,
    prompt_tokens: int = 256,
) -> Figure:
    """Device-hours of generation: the store's tokens/s for this model, device and tasks, else a
    roofline of decoding: each step reads the weights once and every row's KV cache, at
    ``bandwidth_use`` of the device's memory bandwidth (compute-bound steps at 50% of peak)."""
    tokens = ev.expected_tokens.value or 0
    rates = [_median(history.gen_tokens_per_s.get((model, device, t))) for t in ev.per_task]
    if ev.per_task and all(r is not None for r in rates):
        total = ev.responses or 1
        seconds = sum(tokens * n / total / r for (_, n), r in zip(ev.per_task.items(), rates))
        return Figure(seconds / 3600, f"store: generation tokens/s of earlier runs of {model} on {device}")
    spec = gpu(device)
    if spec is None:
        return Figure(None, f"no earlier generation of {model} on {device} in the store, and no data sheet")
    context = prompt_tokens + (tokens / max(ev.responses, 1)) / 2  # the mean length a row attends to
    weight_bytes, kv_bytes = 2 * shape.params, 2 * 2 * shape.layers * shape.kv_dim  # bf16 K and V
    step = max(
        (weight_bytes + batch * context * kv_bytes) / (spec.bandwidth * bandwidth_use * gpus),
        2 * shape.params * batch / (spec.bf16_flops * 0.5 * gpus),
    )
    seconds = tokens / batch * step
    return Figure(
        seconds * gpus / 3600,
        f"roofline: batch {batch}, weights + KV cache read per step at {bandwidth_use:.0%} of "
        f"{spec.name}'s {spec.bandwidth / 1e12:.2f} TB/s (plan.bandwidth_use) on {gpus} GPU(s)",
    )


def rank_work(
    data, cfg, world: int, seed: int, packed: bool, attention_per_token: float
) -> tuple[int, int, int]:
    """The slowest rank's work over the run, on the step plans ``train`` runs (``count_tokens``'s
    order): per step, the rank whose tokens + ``attention_per_token`` x squared lengths is the
    most. Returns (its tokens, its squared lengths, its forwards), summed over the steps."""
    from limo_exp.training.recipe import accumulation_steps, n_optimizer_steps
    from limo_exp.training.steps import micro_size, plan_step, step_order

    steps = n_optimizer_steps(len(data), cfg, world)
    per_step = accumulation_steps(cfg, world) * micro_size(cfg) * world
    order = step_order(len(data), steps, per_step, seed)
    tokens = squares = forwards = 0
    done: dict[tuple[int, ...], tuple[int, int, int]] = {}  # a step's lengths -> its slowest rank
    for step in range(steps):
        indices = order[step * per_step : (step + 1) * per_step]
        key = tuple(len(data[i].input_ids) for i in indices)  # the plan depends on the lengths only
        if key not in done:
            plan = plan_step(data, indices, cfg, world)
            best = (-1.0, 0, 0)
            for rows in plan.rows:
                lengths = [[len(data[i].input_ids) for i in row] for row in rows if row]
                seen = sum(sum(r) if packed else max(r) * len(r) for r in lengths)
                sq = sum(n * n for r in lengths for n in r)
                best = max(best, (seen + attention_per_token * sq, seen, sq))
            done[key] = (best[1], best[2], len(plan.rows[0]))
        tokens, squares, forwards = (a + b for a, b in zip((tokens, squares, forwards), done[key]))
    return tokens, squares, forwards
