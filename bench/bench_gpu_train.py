"""Training at the paper's scale, limo-exp against TRL, side by side in one process (meant for one
CUDA GPU, an H100 or an H200; ``--shape tiny`` runs it on a CPU in seconds, as the test suite does).

    python bench/bench_gpu_train.py                  # random-init Qwen2.5-1.5B shape, 16,384-token rows
    python bench/bench_gpu_train.py --shape tiny --seq 256 --steps 2 --rounds 1
    python bench/bench_gpu_train.py --plan H100 --budget 290   # the schedule there, nothing run

No download: a random model of the shape (the same seed for every setting), sequences of random
tokens whose first eighth is the prompt (labels -100) and the rest targets. fp32 master weights
with bf16 autocast on both sides. The parts live in bench/gpu_train/: ``settings`` (the table
below, the order, what each setting costs per device), ``limo_side`` and ``trl_side`` (the two
runners), ``measure`` (one setting), ``checks`` (Liger against the plain paths), ``report``.

The issue's targets first, ``--rounds`` (2) times, every other round in reverse order:

- ``limo_16k_mixed``: limo-exp's default recipe (``train=full``: fp32 master, bf16 autocast, the
  loss ``auto`` picks, gradient checkpointing over 8k tokens, the attention
  ``attention.choose("auto")`` picks: ``limo_varlen`` without flash-attn) on 8 sequences of 1/16
  to 3/4 of ``--seq`` tokens a step, packed into rows of ``--seq`` tokens; ``trl_16k_mixed``:
  TRL on the same sequences in the same order;
- ``limo_16k`` / ``trl_16k``: one ``--seq``-token sequence per step;
- ``limo_b8`` / ``limo_b16`` (and ``trl_``): 8 / 16 short sequences (1/64 to 1/16 of ``--seq``)
  a step (b16 replaces b32, ~121 GB on the H200: it fits an 80 GB H100).

TRL's side is ``SFTTrainer`` as its users run it (gpu_train/trl_side.py): padding-free (one row
a step) with a varlen kernel, limo-exp's ``limo_varlen`` registered as its attention (flash-attn
cannot be installed on the lent machines; TRL's collator hands it ``cu_seq_lens`` as it would
flash-attn), completion-only loss, Liger's kernels where they run. Then, once each:
``trl_16k_mixed_sdpa`` (TRL as configured before: sdpa's dense block mask over its ~53k-token
row; one timed step), ``limo_16k_mixed_sdpa``, ``limo_16k_varlen`` (a one-document row through
the varlen kernel), ``limo_16k_liger_layers``, ``limo_16k_fsdp`` (FSDP2 in this one process, as
rank 0 of a one-process launch of conf/accelerate/fsdp.yaml), ``limo_b32`` / ``trl_b32`` (only
where the device's memory holds them: the H200); and only when named in ``--settings``:
``limo_16k_skip6``, ``limo_16k_bf16_kahan``, ``limo_16k_mixed_flex``.

Each setting builds its model afresh, trains ``--steps`` + 1 steps at lr 5e-6 and times all but
the first (the warm-up): the device is synchronised when the first and the last optimizer step
are queued, and nowhere else. Between those two, ``torch.cuda.set_sync_debug_mode("warn")``
counts the host syncs of the timed steps (``host_syncs``: count, per step, the lines that made
them; CUDA only). Before each setting the time it is expected to take is printed with where the
figure comes from (settings.expected: its last round, the device's measured figure, the rate
reached here, or FLOPs over the data sheet's peak at an assumed MFU), and with ``--budget``
(seconds from the start of the process) a setting expected to end past it is skipped, as is one
whose memory (H200 figures) the device lacks; one that runs past the budget all the same is
stopped there (``stopped``), and the one in flight is in the JSON (``running``) should the
process be stopped from outside. Reported per setting: real tokens/s, MFU over the device's
bf16 peak counting 6 x params per token (``mfu``) and with causal attention's FLOPs
(``mfu_with_attention``), the attention work over what per-document attention needs
(``attention_flops_ratio``, 1.0: no work across documents), peak memory, the share of three
weight matrices that training changed, the losses, the seconds; out of memory is recorded and
the rest go on. ``summary``: each setting's rounds and their spread; ``targets``: the issue's
checks with pass/fail; ``time``: the budget, the table of estimates and what the budget skipped.
Also Liger's loss against the plain target-only loss and ``train.liger_layers`` against the
plain model, where Liger can run. Writes results/bench/gpu_train.json after every setting.

``LIMO_BENCH_DEVICE=H100`` makes the bench take that device name (its data sheet, time table and
memory) on whatever it runs on: ``device.sh rehearse`` runs so on a CPU (``device_faked`` in the
JSON). Without CUDA, ``TRITON_INTERPRET=1`` (with liger-kernel, triton and numpy < 2.4) runs
Liger's kernels in Triton's CPU interpreter (triton_interpret.py): results, not speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import time
import traceback
from pathlib import Path

from gpu_eval.workloads import Deadline, deadline
from gpu_train.checks import guarded, layers_of, liger_check, liger_layers_check, modeling_kept  # noqa: F401
from gpu_train.limo_side import Skipped
from gpu_train.measure import measure
from gpu_train.report import summarize, targets, write  # noqa: F401
from gpu_train.settings import (  # noqa: F401  (the bench's names, as tests and other benches import them)
    DEFAULT,
    EXTRA,
    PAIRS,
    SETTINGS,
    SHAPES,
    TARGETED,
    expected,
    plan,
    schedule,
    step_work,
    table,
    why_skip,
)

REPO = Path(__file__).resolve().parents[1]
STARTED = time.perf_counter()  # --budget counts from here: main's imports take seconds too


def commit() -> str:
    """The commit measured: $BENCH_COMMIT (device.sh: the checkout's, written by ``fetch``), else git's."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_and_memory(gpu: bool) -> tuple[str, float | None, bool]:
    """The device's name, its memory (GiB) and whether the name is faked (``LIMO_BENCH_DEVICE``)."""
    import torch

    from limo_exp.hardware import gpu as spec
    from limo_exp.tracking.run_log import device_name

    faked = os.environ.get("LIMO_BENCH_DEVICE", "")
    if faked:
        s = spec(faked)
        return f"{faked} (faked on {device_name()})", (s.memory_bytes / 2**30 if s else None), True
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30 if gpu else None
    return device_name(), memory, False


def main(argv: list[str] | None = None, started: float | None = None) -> dict:
    started = started or time.perf_counter()
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
    ap.add_argument("--plan", metavar="DEVICE", help="print the schedule on DEVICE (H100, H200) and exit")
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "gpu_train.json"))
    args = ap.parse_args(argv)
    names = [s for s in args.settings.split(",") if s]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        ap.error(f"unknown setting(s) {unknown}; known: {', '.join(SETTINGS)}")
    if args.plan:
        laid = plan(args.plan, args.budget or float("inf"), steps=args.steps, rounds=args.rounds)
        print(json.dumps(laid, indent=1))
        return laid
    if args.extra_rounds is None:
        args.extra_rounds = 1 if names == DEFAULT else args.rounds

    import importlib.metadata
    import importlib.util

    import torch
    from transformers import Qwen2Config

    from limo_exp.hardware import gpu as gpu_spec
    from limo_exp.training.loss import liger_missing
    from limo_exp.training.shapes import count_params

    gpu = torch.cuda.is_available()
    device, memory, faked = device_and_memory(gpu)
    spec = gpu_spec(device)
    interpreted = not gpu and os.environ.get("TRITON_INTERPRET") == "1" and not liger_missing()
    if interpreted:  # Liger's kernels on the CPU, in Triton's interpreter: results, not speed
        import triton_interpret

        triton_interpret.apply()
    config = Qwen2Config(
        **SHAPES[args.shape], max_position_embeddings=max(args.seq, 4096), tie_word_embeddings=True
    )
    has_trl = all(importlib.util.find_spec(m) is not None for m in ("trl", "datasets"))
    order = schedule(names, args.rounds, args.extra_rounds)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    times = table(device, config, args.seq, args.steps, args.shape)
    flops = {n: step_work(n, config, args.seq, args.steps)[1] for n in names}
    result = {
        "device": device,
        "device_faked": faked,
        "device_memory_gib": round(memory, 1) if memory else None,
        "commit": commit(),
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
        "time": {
            "budget_s": args.budget,
            "table": {
                n: {"setup_s": s, "step_s": round(t, 4), "source": src} for n, (s, t, src) in times.items()
            },
            "skipped_for_time": [],
        },
        "targets": {},
        "summary": {},
        "liger_vs_plain_loss": guarded(liger_check, config, gpu),
        "liger_layers_vs_plain": guarded(liger_layers_check, config, gpu),
        "best": {},
        "runs": runs,
    }
    result["time"]["checks_s"] = round(time.perf_counter() - started, 1)
    known = [expected(n, args.steps, times, runs) for _, n in order]
    if all(k is not None for k in known):
        print(f"{len(order)} settings, ~{sum(k[0] for k in known):.0f} s expected", flush=True)
    for r, name in order:
        elapsed = time.perf_counter() - started
        guess = expected(name, args.steps, times, runs, flops)
        says = f"~{guess[0]:.0f} s expected ({guess[1]})" if guess else "no estimate yet"
        print(f"[round {r + 1}] {name}: {says}; {elapsed:.0f} s in", flush=True)
        skip = why_skip(name, gpu, has_trl, liger_missing(), memory)
        if (
            not skip
            and args.budget
            and (elapsed >= args.budget or (guess and elapsed + guess[0] > args.budget))
        ):
            left, cost = (
                max(args.budget - elapsed, 0),
                f"~{guess[0]:.0f} s expected ({guess[1]})" if guess else "no estimate",
            )
            skip = f"time budget: {cost}, {left:.0f} s of {args.budget:.0f} left"
            result["time"]["skipped_for_time"].append(f"{name} (round {r + 1})")
        if skip:
            runs[name].append({"skipped": skip, "round": r + 1})
            print(f"[round {r + 1}] {name}: skipped: {skip}", flush=True)
            write(result, args.out)
            continue
        t0 = time.perf_counter()
        runs[name].append({"running": True, "round": r + 1, "started_s": round(elapsed, 1)})
        write(result, args.out)  # a process stopped from outside shows what was in flight
        runs[name].pop()
        try:
            with deadline(args.budget - elapsed if args.budget else None):
                got = measure(name, args, config, gpu, device, spec.bf16_flops if spec else None)
        except Deadline as e:  # past the budget: stopped where it was, the JSON kept
            got = {"stopped": f"{e} (the budget)"}
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
        if guess:
            got |= {"expected_s": round(guess[0], 1), "expected_from": guess[1]}
        runs[name].append(got)
        print(
            f"[round {r + 1}] {name}: "
            f"{got.get('real_tokens_per_s', got.get('error', got.get('skipped', got.get('stopped'))))} tokens/s, "
            f"mfu {got.get('mfu')}, attention x{got.get('attention_flops_ratio')}, "
            f"peak {got.get('peak_memory_gb')} GB, syncs/step {got.get('host_syncs', {}).get('per_step')} "
            f"({got['seconds']:.0f} s)",
            flush=True,
        )
        write(result, args.out)  # after every setting: a run stopped early keeps what it measured
    result["time"]["total_s"] = round(time.perf_counter() - started, 1)
    write(result, args.out)
    shown = ("device", "shape", "targets", "summary", "liger_vs_plain_loss", "liger_layers_vs_plain")
    print(json.dumps({k: result[k] for k in shown}, indent=2))
    print(f"{time.perf_counter() - started:.0f} s in all", flush=True)
    return result


if __name__ == "__main__":
    main(started=STARTED)
