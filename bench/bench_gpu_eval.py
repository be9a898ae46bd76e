"""Generation throughput of limo-exp's evaluation on whatever device is present (meant for one
CUDA GPU; ``--shape tiny`` runs on a CPU in seconds, as the test suite does).

    python bench/bench_gpu_eval.py                  # Qwen2.5-1.5B shape: the two workloads (+ vLLM)
    python bench/bench_gpu_eval.py --shape tiny --batches 1,2 --limit 2 --max-gen-toks 8 --decodings ""

Two engine-level workloads first (``workloads``), each through ``eval.hf_decoding=eager`` at
batch 64 and ``compiled`` (``--decodings``), interleaved: ``equal`` (``--equal-prompts`` prompts
of 64-512 tokens, greedy, every response ``--equal-new`` tokens: the end-of-turn token can never
win) and ``varied`` (``--varied-prompts`` prompts, sampled at temperature 1, each request's own
seed, the end-of-turn token made likely enough that lengths spread like a reasoning model's:
median ``--varied-median``, a tail to the cap ``--varied-cap``). Per run: new tokens, wall
seconds, new tokens/s, compile seconds (kept out of tokens/s), compiled shapes, response
lengths. Sampled responses differ between eager and compiled (their samplers differ); their
lengths come from the same distribution, hence both tokens/s and wall time are reported.

No download: a random-init model of the shape with the tiny tokenizer (its vocabulary replaces
the 151,936 of Qwen2.5, so the output layer is smaller than the real model's), saved in bf16 on
CUDA. It runs the ``limo_paper`` tasks with ``--limit`` questions when ``--data-dir`` holds the
benchmark files, else ``limo_synthetic``. A random model never ends its answer, so every
response is ``--max-gen-toks`` tokens: new tokens per second of generation, per backend and batch
size, the figure the issue measured at 11 (batch 1), 87 (8) and 700 (64) on lm-eval's hf path.
Writes results/bench/gpu_eval.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import tempfile
from pathlib import Path

from bench_gpu_train import SHAPES as TRAIN_SHAPES  # the same shapes as the training bench

REPO = Path(__file__).resolve().parents[1]
SHAPES = {name: {k: v for k, v in shape.items() if k != "vocab_size"} for name, shape in TRAIN_SHAPES.items()}


def build(shape: str, out: Path, dtype) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from limo_exp.training.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    config = Qwen2Config(
        **SHAPES[shape],
        vocab_size=len(tok),
        max_position_embeddings=32768,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(dtype)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def calibrate_end(model_dir: str, median: int, device: str) -> float:
    """Set the end-of-turn row of the output layer so that, sampling at temperature 1, a response
    ends after ``median`` tokens in the median: ``P(end) = ln 2 / median`` a step, fitted by
    bisection on the model's own sampled text (its end suppressed). Returns the probability."""
    import math

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    eos = model.config.eos_token_id
    start = torch.randint(3, model.config.vocab_size, (8, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ids = model.generate(
            start.to(device), do_sample=True, top_k=0, max_new_tokens=128, min_new_tokens=128,
            pad_token_id=model.config.pad_token_id,
        )  # fmt: skip
        h = model.model(input_ids=ids).last_hidden_state[:, 32:].reshape(-1, model.config.hidden_size)
        others = model.lm_head(h)
        others[:, eos] = float("-inf")
        rest = others.logsumexp(-1)
        u = h.mean(0) / h.mean(0).norm()
        e = h @ u
        target, lo, hi = math.log(2) / median, 0.0, 1e4

        def p(beta):
            return torch.sigmoid(beta * e - rest).mean().item()

        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if p(mid) < target else (lo, mid)
        model.lm_head.weight[eos] = hi * u
    model.save_pretrained(model_dir)
    return p(hi)


def silence_end(model_dir: str) -> None:
    """The end-of-turn row of the output layer set to zero: its logit 0 never beats the largest
    of the others, so greedy responses run to ``max_new``."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight[model.config.eos_token_id] = 0
    model.save_pretrained(model_dir)


def prompts(tok, n: int, lo: int, hi: int, seed: int = 0) -> list[str]:
    """``n`` prompts of random words, ``lo``-``hi`` tokens each."""
    import random

    rng = random.Random(seed)
    words = [w for w in tok.get_vocab() if w.isalpha()]
    out = []
    for _ in range(n):
        want, text = rng.randint(lo, hi), ""
        while len(tok(text, add_special_tokens=False)["input_ids"]) < want:
            text += " " + " ".join(rng.choice(words) for _ in range(16))
        out.append(text)
    return out


def engine_run(model_dir: str, decoding: str, batch, reqs, dtype: str, device: str) -> dict:
    import statistics
    import time

    import torch

    from limo_exp.evaluation.generation.engines import EngineOptions
    from limo_exp.evaluation.generation.hf import HFEngine

    eng = HFEngine(model_dir, EngineOptions(dtype=dtype, device=device, batch_size=batch, decoding=decoding))
    started = time.perf_counter()
    outs = eng.generate(reqs)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    seconds = wall - eng.stats.compile_seconds
    lengths = sorted(o.n_tokens for o in outs)
    tokens = sum(lengths)
    run = {
        "decoding": decoding,
        "batch_size": eng.batch_size,
        "responses": len(outs),
        "new_tokens": tokens,
        "wall_seconds": round(wall, 2),
        "compile_seconds": round(eng.stats.compile_seconds, 2),
        "new_tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        "compiled_shapes": [list(s) for s in eng.stats.shapes],
        "segments": eng.stats.segments,
        "length_median": statistics.median(lengths),
        "length_p90": lengths[int(0.9 * (len(lengths) - 1))],
        "length_max": lengths[-1],
        "ended_early": sum(o.finish == "stop" for o in outs),
    }
    del eng
    if device == "cuda":
        torch.cuda.empty_cache()
    return run


def workloads(args, out: dict, tmp: Path, dtype, device: str) -> None:
    """The equal- and varied-length workloads through each decoding (see the module's doc)."""
    from transformers import AutoTokenizer

    from limo_exp.evaluation.generation.engines import Gen, sample_seed

    name = str(dtype).removeprefix("torch.")
    equal_dir, varied_dir = tmp / "equal", tmp / "varied"
    build(args.shape, equal_dir, dtype)
    silence_end(str(equal_dir))
    build(args.shape, varied_dir, dtype)
    out["varied_end_probability"] = calibrate_end(str(varied_dir), args.varied_median, device)
    tok = AutoTokenizer.from_pretrained(equal_dir)
    plans = {
        "equal": (equal_dir, [Gen(p, args.equal_new) for p in prompts(tok, args.equal_prompts, 64, 512)]),
        "varied": (
            varied_dir,
            [
                Gen(p, args.varied_cap, temperature=1.0, seed=sample_seed(str(i)))
                for i, p in enumerate(prompts(tok, args.varied_prompts, 64, 512, seed=1))
            ],
        ),
    }
    out["workloads"] = {}
    for wl, (model_dir, reqs) in plans.items():
        runs = out["workloads"].setdefault(wl, {})
        for decoding in args.decodings.split(","):
            batch = 64 if decoding == "eager" else "auto"
            runs[decoding] = engine_run(str(model_dir), decoding, batch, reqs, name, device)
            print(wl, json.dumps(runs[decoding]), flush=True)
            write(out, args.out)
        if {"eager", "compiled"} <= set(runs):
            e, c = runs["eager"], runs["compiled"]
            runs["compiled_over_eager_tokens_per_s"] = round(c["new_tokens_per_s"] / e["new_tokens_per_s"], 2)
            runs["eager_over_compiled_wall"] = round(e["wall_seconds"] / c["wall_seconds"], 2)
        write(out, args.out)


def write(out: dict, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=2))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    ap.add_argument(
        "--batches", default="", help="batch sizes of lm-eval runs (hf_decoding auto); empty: none"
    )
    ap.add_argument("--decodings", default="compiled,eager", help="of the engine workloads; empty: none")
    ap.add_argument("--equal-prompts", type=int, default=128)
    ap.add_argument("--equal-new", type=int, default=128)
    ap.add_argument("--varied-prompts", type=int, default=256)
    ap.add_argument("--varied-median", type=int, default=128)
    ap.add_argument("--varied-cap", type=int, default=384)
    ap.add_argument("--limit", type=int, default=8, help="questions per task")
    ap.add_argument("--max-gen-toks", type=int, default=256)
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "eval"))
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "gpu_eval.json"))
    args = ap.parse_args(argv)

    import torch

    from limo_exp.config import EvalConfig, SyntheticConfig
    from limo_exp.evaluation.evaluate import evaluate
    from limo_exp.tracking.run_log import device_name

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    has_data = (Path(args.data_dir) / "math500.jsonl").exists()
    tasks = ["limo_paper"] if has_data else ["limo_synthetic"]
    out = {
        "device": device_name(),
        "machine": platform.platform(),
        "shape": args.shape,
        "tasks": tasks,
        "limit": args.limit,
        "max_gen_toks": args.max_gen_toks,
        "runs": [],
    }
    backends = ["hf"] + (["vllm"] if cuda and importlib.util.find_spec("vllm") else [])
    with tempfile.TemporaryDirectory() as tmp:
        if args.decodings:
            workloads(args, out, Path(tmp), dtype, "cuda" if cuda else "cpu")
        model = str(build(args.shape, Path(tmp) / "model", dtype))
        for backend in backends:
            for batch in [int(b) for b in args.batches.split(",") if b] if backend == "hf" else [0]:
                suite = EvalConfig(
                    tasks=tasks,
                    data_dir=args.data_dir if has_data else None,
                    limit=args.limit,
                    backend=backend,
                    batch_size=max(batch, 1),
                    max_gen_toks=args.max_gen_toks,
                    store="off",
                    synthetic=SyntheticConfig(n=args.limit),
                )
                res = evaluate(
                    model, suite, device="cuda" if cuda else "cpu", dtype=str(dtype).removeprefix("torch.")
                )
                rates = {
                    k.split("/")[1]: v for k, v in res.metrics.items() if k.endswith("/gen_tokens_per_s")
                }
                tokens = sum(r.get("n_tokens", 0) for rows in res.samples.values() for r in rows)
                run = {
                    "backend": backend,
                    "batch_size": batch or "vllm",
                    "responses": res.metrics["eval/responses_generated"],
                    "generated_tokens": tokens,
                    "tokens_per_s_by_task": rates,
                }
                run["tokens_per_s"] = sum(rates.values()) / len(rates) if rates else None
                out["runs"].append(run)
                print(json.dumps(run), flush=True)
                write(out, args.out)  # after every run: a bench stopped at its limit keeps what it measured
    write(out, args.out)
    return out


if __name__ == "__main__":
    main()
