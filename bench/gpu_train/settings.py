"""What the GPU training bench runs, in what order, and what each setting is expected to cost.

Settings: name -> (side, data, sequences per step, extra). ``extra`` holds TrainConfig fields and
the bench's own keys: ``attn`` (the attention implementation; limo-exp's default is what
``attention.choose("auto")`` picks, TRL's is ``limo_varlen``), ``single_document_sdpa``, ``fsdp``
and ``steps`` (a cap on the timed steps of an expensive setting).

The time a setting takes is gated before it starts (``expected``): its own last round where it
ran, else the device's measured figure (``MEASURED``), else the rate this process reached on a
setting of the same side and data (of the same side, data, any), else its FLOPs over the device's
data-sheet bf16 peak at an assumed MFU (``ASSUMED_MFU``). Each estimate says which of these it
is; ``plan`` lays the whole schedule out against a budget without running anything (``--plan``).
"""

from __future__ import annotations

import random

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
SDPA_TRL = {"attn": "sdpa"}  # TRL as it ran before: one padding-free row under sdpa's block mask
SETTINGS = {
    "limo_16k_mixed": ("limo", "mixed", 8, {}),
    "trl_16k_mixed": ("trl", "mixed", 8, {}),
    "limo_16k": ("limo", "long", 1, {}),
    "trl_16k": ("trl", "long", 1, {}),
    "limo_b8": ("limo", "short", 8, {}),
    "trl_b8": ("trl", "short", 8, {}),
    "limo_b16": ("limo", "short", 16, {}),  # the short-batch pair: fits an 80 GB H100
    "trl_b16": ("trl", "short", 16, {}),
    "trl_16k_mixed_sdpa": ("trl", "mixed", 8, {**SDPA_TRL, "steps": 1}),  # a ~53k-token dense mask
    "limo_16k_mixed_sdpa": ("limo", "mixed", 8, {"attn": "sdpa"}),
    "limo_16k_varlen": ("limo", "long", 1, {"attn": "limo_varlen", "single_document_sdpa": False}),
    "limo_16k_liger_layers": ("limo", "long", 1, {"liger_layers": True}),
    "limo_16k_fsdp": ("limo", "long", 1, {"fsdp": True}),
    "limo_b32": ("limo", "short", 32, {}),  # ~121 GB on the H200: only where the memory is
    "trl_b32": ("trl", "short", 32, {}),
    "limo_16k_skip6": ("limo", "long", 1, {"checkpoint_skip_layers": 6}),
    "limo_16k_bf16_kahan": ("limo", "long", 1, {"master_dtype": "bfloat16", "optimizer": "adamw_kahan"}),
    "limo_16k_mixed_flex": ("limo", "mixed", 8, {"attn": "flex_attention"}),
}
# the targets: limo-exp against TRL (padding-free on the same varlen kernel, + Liger)
PAIRS = (
    ("limo_16k_mixed", "trl_16k_mixed"),
    ("limo_16k", "trl_16k"),
    ("limo_b8", "trl_b8"),
    ("limo_b16", "trl_b16"),
)
TARGETED = [name for pair in PAIRS for name in pair]
EXTRA = [
    "trl_16k_mixed_sdpa",
    "limo_16k_mixed_sdpa",
    "limo_16k_varlen",
    "limo_16k_liger_layers",
    "limo_16k_fsdp",
    "limo_b32",
    "trl_b32",
]
DEFAULT = TARGETED + EXTRA  # skip6, bf16_kahan and mixed_flex (compiles per row length) only when named
GOALS = {
    "mixed_mfu": 0.30,
    "speedup": 1.2,
    "peak_ratio": 1.10,
    "round_spread": 0.15,
    "changed": 0.99,
    "loss_rel": 1e-3,
}

# ---------------------------------------------------------------- what a setting costs
# real tokens/s measured on one H200 (torch 2.11, transformers 5.17) at d11e33a, 2026-12-04
# (shared/gpu/2026-12-04-h200/gpu_train.json: limo-exp with sdpa then, TRL with sdpa + Liger)
MEASURED = {
    "H200": {
        "limo_16k": 21727.5,
        "trl_16k": 27302.4,
        "limo_b8": 11308.8,
        "trl_b8": 23711.8,
        "limo_b32": 11096.5,
        "trl_b32": 13182.1,
        "limo_16k_mixed_sdpa": 8818.5,  # limo_16k_mixed of that run, which was sdpa
        "limo_16k_liger_layers": 25285.0,
        "limo_16k_skip6": 22616.0,
        "limo_16k_bf16_kahan": 22325.3,
    },
}
MEASURED_SOURCE = "measured on an H200 at d11e33a (2026-12-04, sdpa)"
# peak GiB, the same run; b16 interpolated in tokens a step between its b8 and b32 (estimates)
PEAK_GIB = {
    "limo_16k": 28.84,
    "trl_16k": 24.8,
    "limo_16k_mixed": 30.66,
    "limo_b8": 41.71,
    "trl_b8": 36.74,
    "limo_b16": 68.2,
    "trl_b16": 58.7,
    "limo_b32": 120.83,
    "trl_b32": 102.4,
}
# not measured anywhere: model build, trainer, first-use kernels per setting; the process itself
# (imports, CUDA context, the two Liger checks) before the first setting
SETUP_SECONDS = {"limo": 8.0, "trl": 12.0}
PROCESS_SECONDS = 25.0
# assumed MFU over (6N + attention) FLOPs where nothing was measured: H200 figures of d11e33a were
# 0.20-0.26 on one 16k sequence, 0.10-0.22 on short ones; a dense mask wastes its attention
ASSUMED_MFU = {"long": 0.20, "mixed": 0.18, "short": 0.10, "dense": 0.08}


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


def timed_steps(name: str, steps: int) -> int:
    """The steps a setting times (after its warm-up): ``--steps``, or its own cap."""
    return min(steps, SETTINGS[name][3].get("steps", steps))


def step_work(name: str, config, seq: int, steps: int) -> tuple[int, float]:
    """(real tokens, FLOPs) of an average step of ``name``: 6 x params per token plus attention,
    causal per document (varlen) or over each row's whole square (a dense block mask)."""
    from limo_exp.training.shapes import count_params

    side, data, per_step, extra = SETTINGS[name]
    n = timed_steps(name, steps) + 1
    docs = lengths(data, per_step * n, seq)
    tokens = sum(docs) / n
    hl = config.hidden_size * config.num_hidden_layers
    dense = extra.get("attn") == "sdpa" and data != "long"
    if dense:  # rows of the whole step (TRL padding-free) or of --seq tokens (limo-exp's packing)
        width = tokens if side == "trl" else seq
        rows = 1 if side == "trl" else max(1, round(tokens / seq))
        attention = 12 * hl * width * width * rows
    else:
        attention = sum(6 * hl * s * (s + 1) for s in docs) / n
    return round(tokens), 6 * count_params(config) * tokens + attention


def kind(name: str) -> str:
    side, data, _, extra = SETTINGS[name]
    return "dense" if extra.get("attn") == "sdpa" and data != "long" else data


def table(device: str, config, seq: int, steps: int, shape: str) -> dict[str, tuple[float, float, str]]:
    """name -> (setup seconds, seconds a step, source) on ``device`` before anything has run:
    measured figures for this device at the 1.5B shape and 16k rows, else FLOPs over the data
    sheet's bf16 peak at ``ASSUMED_MFU``; empty for a device without a data sheet (a CPU)."""
    from limo_exp.hardware import gpu

    spec = gpu(device)
    if spec is None:
        return {}
    measured = MEASURED.get(spec.name, {}) if (shape, seq) == ("1.5b", 16384) else {}
    out = {}
    for name, (side, *_rest) in SETTINGS.items():
        tokens, flops = step_work(name, config, seq, steps)
        if name in measured:
            step, source = tokens / measured[name], MEASURED_SOURCE
        else:
            mfu = ASSUMED_MFU[kind(name)]
            step = flops / (spec.bf16_flops * mfu)
            source = (
                f"estimate: FLOPs / ({spec.name} data-sheet {spec.bf16_flops / 1e12:.0f} TFLOP/s x MFU {mfu})"
            )
        out[name] = (SETUP_SECONDS[side], step, source)
    return out


def expected(name: str, steps: int, table: dict, runs: dict, flops: dict | None = None):
    """Seconds ``name`` is expected to take, and from what, the nearest evidence first: its last
    measured round; the device's measured figure (``MEASURED``); the FLOP rate and setup seconds
    this process reached on a setting of the same side and data (else of the same side, of the same
    data, any);
    the data sheet's estimate (the table); None when nothing is known."""
    n = timed_steps(name, steps) + 1
    took = [t["seconds"] for t in runs.get(name, []) if "real_tokens_per_s" in t]
    if took:
        return took[-1], "as its last round"
    if name in table and table[name][2] == MEASURED_SOURCE:
        setup, step, source = table[name]
        return setup + n * step, source
    done = [(o, t) for o, ts in runs.items() for t in ts if "step_seconds" in t and o in (flops or {})]
    side, data = SETTINGS[name][:2]
    for same in (
        lambda o: SETTINGS[o][:2] == (side, data),
        lambda o: SETTINGS[o][0] == side,  # the sides differ more than the data (seen on the CPU)
        lambda o: SETTINGS[o][1] == data,
        lambda o: True,
    ):
        near = [(o, t) for o, t in done if same(o)]
        if near:
            other, t = near[-1]
            rate = flops[other] / t["step_seconds"]
            setup = max(t["seconds"] - (t["timed_steps"] + 1) * t["step_seconds"], 0.0)
            return setup + n * flops[name] / rate, f"the FLOP rate and setup of {other} here"
    if name in table:
        setup, step, source = table[name]
        return setup + n * step, source
    return None


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


def why_skip(name: str, gpu: bool, has_trl: bool, liger: str, memory_gib: float | None = None) -> str:
    """Why ``name`` cannot run here, known before it starts ("" when it can)."""
    side, _, _, extra = SETTINGS[name]
    if side == "trl" and not has_trl:
        return "trl is not installed (pip install -e '.[bench]')"
    if extra.get("attn") == "flex_attention" and not gpu:
        return "flex_attention has no backward on CPU"
    if extra.get("liger_layers") and liger:
        return liger
    need = PEAK_GIB.get(name)
    if memory_gib and need and need > 0.97 * memory_gib:
        return f"needs ~{need:.0f} GiB (H200 figures), this device has {memory_gib:.0f} GiB"
    return ""


def plan(
    device: str, budget: float, *, steps: int = 3, rounds: int = 2, shape: str = "1.5b", seq: int = 16384
):
    """The schedule on ``device`` against ``budget`` seconds, nothing run: each setting's expected
    seconds and source, the memory rule's and the budget's skips (first rounds' estimates stand
    in for later rounds)."""
    from transformers import Qwen2Config

    from limo_exp.hardware import gpu

    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=max(seq, 4096), tie_word_embeddings=True)
    spec = gpu(device)
    memory = spec.memory_bytes / 2**30 if spec else None
    times = table(device, config, seq, steps, shape)
    elapsed, rows, runs = PROCESS_SECONDS, [], {}
    for r, name in schedule(DEFAULT, rounds, 1):
        guess = expected(name, steps, times, runs)
        skip = why_skip(name, True, True, "", memory)
        if not skip and guess and elapsed + guess[0] > budget:
            skip = f"time budget: ~{guess[0]:.0f} s expected, {max(budget - elapsed, 0):.0f} s left"
        rows.append({"round": r + 1, "setting": name, "expected_s": round(guess[0], 1) if guess else None,
                     "source": guess[1] if guess else None, "start_s": round(elapsed, 1), "skipped": skip})  # fmt: skip
        if not skip and guess:
            elapsed += guess[0]
            runs.setdefault(name, []).append({"real_tokens_per_s": 1.0, "seconds": guess[0]})
    return {"device": device, "budget_s": budget, "expected_end_s": round(elapsed, 1), "schedule": rows}
