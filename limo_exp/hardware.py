"""What the hardware can do, in one place: the GPUs' data-sheet figures (MFU, ``limo-exp plan``)
and the generation throughput measured per hf decoding (the slow-evaluation warning)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    name: str
    bf16_flops: float  # dense bf16 peak FLOP/s
    memory_bytes: float  # what the card holds: NVIDIA's "80 GB" is 80 GiB (nvidia-smi: 81,559 MiB)
    bandwidth: float  # HBM bytes/s


# vendors' data sheets (SXM parts; A100: the 80 GB one)
GPUS = {
    "H200": GPU("H200", 989e12, 143_771 * 2**20, 4.8e12),  # nvidia-smi: 143,771 MiB
    "H100": GPU("H100", 989e12, 80 * 2**30, 3.35e12),
    "A100": GPU("A100", 312e12, 80 * 2**30, 2.0e12),
    "L40S": GPU("L40S", 362e12, 48e9, 0.864e12),  # 46,068 MiB: the data sheet's 48 GB are decimal
}

# new tokens/s by batch, per eval.hf_decoding, measured on one H100 in bf16 with a Qwen2.5-1.5B-shaped
# model: eager = HF generate (issue 9). The static/compiled loop has no GPU measurement yet
# (bench/bench_gpu_eval.py makes one): no entry, so no rate is quoted for it.
HF_TOKENS_PER_S = {"eager": {1: 11.0, 8: 87.0, 64: 700.0}}


def hf_tokens_per_s(decoding: str, batch: int) -> tuple[float, int] | None:
    """(new tokens/s, the batch it was measured at) for ``decoding`` at the largest measured batch
    up to ``batch``; None where ``decoding`` was not measured."""
    rates = HF_TOKENS_PER_S.get(decoding, {})
    below = [b for b in rates if b <= batch]
    return (rates[max(below)], max(below)) if below else None


def gpu(device: str) -> GPU | None:
    """The data sheet of a device named as torch names it ("NVIDIA H100 80GB HBM3") or as a config
    does ("H100"); None for a CPU or a GPU not in ``GPUS``."""
    return next((g for k, g in GPUS.items() if k.lower() in device.lower()), None)
