"""Generation throughput of limo-exp's hf engine at the evaluation protocol's shapes (meant for
one CUDA GPU, an H100 or an H200, inside 4 minutes; ``--shape tiny`` and small sizes run it on a
CPU, as the test suite and ``device.sh rehearse`` do).

    python bench/bench_gpu_eval.py --budget 230      # Qwen2.5-1.5B shape, the parts below
    python bench/bench_gpu_eval.py --shape tiny --decodings static,eager --short-prompts 6 ...

No download: a random-init model of the shape at Qwen2.5's vocabulary (151,936 tokens) and
positions (32,768), bf16 on CUDA, with a word-level tokenizer of the same vocabulary (one token a
word), built once (bench/gpu_eval/model.py). Sampling is the protocol's: temperature 0.6, top_p
0.95, each request's own seed. Only the engines' public API is used (``Gen``, ``EngineOptions``,
``sample_seed``, ``HFEngine``).

How response lengths are forced: a random model never ends its answer, so the model carries a
rule (bench/gpu_eval/forced_end.py, loaded through ``trust_remote_code``) that sets the
end-of-turn logit from the row's position: never below a start position, then with probability
1 / (end - position) after temperature (the end position uniform on [start, end)), certain at the
end. Every other logit is the model's own. For the long workload the start is ``--long-min``
past the longest prompt and the end ``--long-max`` past the shortest, under a budget
(``max_new``) of ``--long-max``: responses of ``--long-min``..``--long-max`` tokens (2k-8k under
8k), ended by the model's end-of-turn token as a reasoning model's are. Where lengths must be
fixed (short responses, step times) the rule's start is past the model's positions: never.

The parts, in this order, each inside the seconds left (``--budget``, from the start of the
process) less the minimum the later parts need; a part past its limit is stopped where it is
(``Deadline``) and says so, and the JSON is rewritten after every part:

1. ``short``: ``--short-prompts`` prompts of 64-512 tokens, ``--short-new`` new tokens each, per
   decoding of ``--decodings`` (compiled first: the target, >= 7,500 new tokens/s);
2. ``steps``: the time of one decoding step at ``--positions`` (1k, 8k, 32k) positions in use,
   ``--step-batch`` rows, by difference of two lengths (workloads.step_time), eager then compiled;
3. ``long``: ``--long-prompts`` prompts, lengths as above (the target: >= 5,000 new tokens/s),
   the first decoding of ``--decodings`` only.

Per run: new tokens, wall and compile seconds (compiling kept out of tokens/s), tokens/s, the
compiled shapes, the lengths and how responses ended. ``targets``: the two figures with pass/fail
(None where not measured). ``LIMO_BENCH_DEVICE`` fakes the device's name (``device.sh
rehearse``). Writes results/bench/gpu_eval.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import traceback
from pathlib import Path

from bench_gpu_train import SHAPES as TRAIN_SHAPES  # the same shapes as the training bench
from bench_gpu_train import commit, device_and_memory
from gpu_eval import model as M
from gpu_eval.workloads import Deadline, deadline, engine, release, requests, run, step_time

REPO = Path(__file__).resolve().parents[1]
STARTED = time.perf_counter()  # --budget counts from here: main's imports take seconds too
SHAPES = {name: {k: v for k, v in shape.items() if k != "vocab_size"} for name, shape in TRAIN_SHAPES.items()}
SAMPLING = (0.6, 0.95)  # LIMO's protocol: temperature, top_p
TARGETS = {"short_new_tokens_per_s": 7500.0, "long_new_tokens_per_s": 5000.0}
# the seconds each part needs at least on the 1.5B shape (compiling included): a part is given
# the time left less what the parts after it need, and starts only with its own minimum
MINIMUM = {"short": 45.0, "steps_eager": 25.0, "long": 70.0, "steps_compiled": 35.0}


def write(out: dict, path: str) -> None:
    out["targets"] = targets(out)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=2) + "\n")


def targets(out: dict) -> dict:
    def check(value, goal):
        return {"value": value, "target": f">= {goal:.0f}", "pass": None if value is None else value >= goal}

    first = out.get("decodings", [None])[0]
    short = out.get("short", {}).get(first, {}).get("new_tokens_per_s")
    long = out.get("long", {}).get(first, {}).get("new_tokens_per_s")
    return {
        "decoding": first,
        "short_new_tokens_per_s": check(short, TARGETS["short_new_tokens_per_s"]),
        "long_new_tokens_per_s": check(long, TARGETS["long_new_tokens_per_s"]),
    }


def main(argv: list[str] | None = None, started: float | None = None) -> dict:
    started = started or time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    ap.add_argument("--decodings", default="compiled,eager", help="hf decodings; the first is the target's")
    ap.add_argument("--short-prompts", type=int, default=256)
    ap.add_argument("--short-new", type=int, default=256)
    ap.add_argument("--eager-prompts", type=int, default=64, help="short prompts of the other decodings")
    ap.add_argument("--positions", default="1024,8192,32768", help="positions in use of the step times")
    ap.add_argument("--step-batch", type=int, default=8)
    ap.add_argument("--step-lengths", default="8,72", help="the two response lengths of a step time")
    ap.add_argument("--long-prompts", type=int, default=64)
    ap.add_argument("--long-min", type=int, default=2048)
    ap.add_argument("--long-max", type=int, default=8192, help="also the long workload's budget (max_new)")
    ap.add_argument("--prompt-tokens", default="100,400", help="the long workload's prompt lengths")
    ap.add_argument("--max-batch", type=int, default=128, help="EngineOptions.max_batch_size")
    ap.add_argument("--budget", type=float, default=None, help="seconds from the start for all parts")
    ap.add_argument("--scale", type=float, default=1.0, help="MINIMUM's seconds times this (a CPU's)")
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "gpu_eval.json"))
    args = ap.parse_args(argv)
    decodings = [d for d in args.decodings.split(",") if d]
    positions = [int(p) for p in args.positions.split(",") if p]
    short, long = (int(x) for x in args.step_lengths.split(","))
    plo, phi = (int(x) for x in args.prompt_tokens.split(","))

    import importlib.metadata

    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = "bfloat16" if cuda else "float32"
    name, _, faked = device_and_memory(cuda)
    start, end = args.long_min + phi, args.long_max + plo
    out = {
        "device": name,
        "device_faked": faked,
        "commit": commit(),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
        "shape": args.shape,
        "vocab": M.VOCAB,
        "positions": M.POSITIONS,
        "dtype": dtype,
        "sampling": {"temperature": SAMPLING[0], "top_p": SAMPLING[1]},
        "decodings": decodings,
        "lengths": {
            "how": "the model's end-of-turn logit set from the row's position (bench/gpu_eval/forced_end.py): "
            f"never before position {start}, then probability 1/({end} - position) after temperature; "
            f"prompts of {plo}-{phi} tokens, max_new {args.long_max}: responses of ~{args.long_min}-"
            f"{args.long_max} tokens; short responses and step times: never (fixed lengths)",
            "long": {"start": start, "end": end, "max_new": args.long_max, "prompt_tokens": [plo, phi]},
        },
        "time": {"budget_s": args.budget, "parts": {}, "stopped": [], "skipped": []},
        "short": {},
        "steps": {},
        "long": {},
    }
    minimum = {k: v * args.scale for k, v in MINIMUM.items()}

    def left(part: str) -> float | None:
        """Seconds part ``part`` may take: the budget left less the later parts' minimum."""
        if args.budget is None:
            return None
        later = list(minimum)[list(minimum).index(part) + 1 :]
        return args.budget - (time.perf_counter() - started) - sum(minimum[p] for p in later)

    def part(key: str, fn) -> None:
        limit = left(key)
        if limit is not None and limit < minimum[key]:
            out["time"]["skipped"].append(
                f"{key}: {max(limit, 0):.0f} s left of the {minimum[key]:.0f} it needs"
            )
            write(out, args.out)
            return
        t0 = time.perf_counter()
        try:
            with deadline(limit):
                fn()
        except Deadline as e:
            out["time"]["stopped"].append(f"{key}: {e}")
        except Exception as e:  # one part's failure must not lose the others' figures
            out.setdefault("errors", {})[key] = f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}"
        finally:
            release(device)
        out["time"]["parts"][key] = round(time.perf_counter() - t0, 1)
        write(out, args.out)

    with tempfile.TemporaryDirectory() as tmp:
        base = M.build(SHAPES[args.shape], Path(tmp) / "base", getattr(torch, dtype), device)
        fixed = str(M.variant(base, Path(tmp) / "fixed", start=10**9, end=10**9 + 1, temperature=SAMPLING[0]))
        ends = str(M.variant(base, Path(tmp) / "ends", start=start, end=end, temperature=SAMPLING[0]))
        out["time"]["build_s"] = round(time.perf_counter() - started, 1)
        print(f"model built in {out['time']['build_s']} s", flush=True)

        def short_part():
            for i, decoding in enumerate(decodings):
                n = args.short_prompts if i == 0 else args.eager_prompts
                reqs = requests(n, 64, 512, args.short_new, *SAMPLING, "short", M.VOCAB)
                batch = "auto" if decoding != "eager" else min(n, 64)
                eng = engine(fixed, decoding, batch, dtype, device, args.max_batch)
                out["short"][decoding] = run(eng, reqs, device)
                print("short", json.dumps(out["short"][decoding]), flush=True)
                del eng
                release(device)
                write(out, args.out)

        def steps_part(decoding):
            def go():
                eng = engine(fixed, decoding, args.step_batch, dtype, device, args.max_batch)
                run(eng, requests(args.step_batch, 16, 16, 4, *SAMPLING, "warm-up", M.VOCAB), device)
                for p in positions:
                    got = step_time(eng, p, args.step_batch, short, long, device, M.VOCAB, SAMPLING)
                    out["steps"].setdefault(decoding, {})[str(p)] = got
                    print("steps", decoding, json.dumps(got), flush=True)
                    write(out, args.out)

            return go

        def long_part():
            decoding = decodings[0]
            reqs = requests(args.long_prompts, plo, phi, args.long_max, *SAMPLING, "long", M.VOCAB)
            eng = engine(ends, decoding, "auto", dtype, device, min(args.max_batch, args.long_prompts))
            t0 = time.perf_counter()
            try:
                out["long"][decoding] = run(eng, reqs, device)
            except Deadline:  # what it would have needed to reach the target is still known
                took, mean = time.perf_counter() - t0, (args.long_min + args.long_max) / 2
                out["long"][decoding] = {
                    "decoding": decoding,
                    "responses": len(reqs),
                    "stopped_after_s": round(took, 1),
                    "new_tokens_expected": round(len(reqs) * mean),
                    "new_tokens_per_s_below": round(len(reqs) * args.long_max / took, 1),
                    "new_tokens_per_s_about": round(len(reqs) * mean / took, 1),
                }
                raise
            print("long", json.dumps(out["long"][decoding]), flush=True)

        part("short", short_part)
        part("steps_eager", steps_part("eager") if "eager" in decodings else lambda: None)
        part("long", long_part)
        part("steps_compiled", steps_part(decodings[0]) if decodings[0] != "eager" else lambda: None)
    out["time"]["total_s"] = round(time.perf_counter() - started, 1)
    write(out, args.out)
    print(json.dumps({k: out[k] for k in ("device", "targets", "time")}, indent=2), flush=True)
    return out


if __name__ == "__main__":
    main(started=STARTED)
