"""The GPU eval bench's measurements, through the engines' public API only
(``generation.engines``: Gen, EngineOptions, sample_seed; ``generation.hf``: HFEngine): a
workload's new tokens/s, and the time of one decoding step at a number of positions in use."""

from __future__ import annotations

import contextlib
import gc
import signal
import statistics
import time

from gpu_eval.model import prompts


class Deadline(BaseException):
    """A part of the bench ran past the seconds it was given. A BaseException, as
    KeyboardInterrupt is: libraries' ``except Exception`` must not swallow it."""


@contextlib.contextmanager
def deadline(seconds: float | None):
    """Raise ``Deadline`` in this (main) thread once ``seconds`` have passed: the decoding loops
    return to Python every step, so a part that runs long stops there, and the bench goes on."""
    if seconds is None or not hasattr(signal, "setitimer"):
        yield
        return

    def fire(*_):
        raise Deadline(f"stopped at its limit of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def engine(model_dir: str, decoding: str, batch, dtype: str, device: str, max_batch: int = 128):
    from limo_exp.evaluation.generation.engines import EngineOptions
    from limo_exp.evaluation.generation.hf import HFEngine

    opts = EngineOptions(
        dtype=dtype,
        device=device,
        batch_size=batch,
        max_batch_size=max_batch,
        decoding=decoding,
        trust_remote_code=True,  # the model's forced_end.py
    )
    return HFEngine(model_dir, opts)


def release(device: str) -> None:
    """What a finished (or stopped) part held on the device, handed back."""
    import torch

    gc.collect()
    if device == "cuda":
        import torch._dynamo

        torch._dynamo.reset()  # compiled steps and their CUDA graphs' memory pools
        gc.collect()
        torch.cuda.empty_cache()


def requests(n: int, lo: int, hi: int, max_new: int, temperature: float, top_p: float, tag: str, vocab: int):
    from limo_exp.evaluation.generation.engines import Gen, sample_seed

    return [
        Gen(p, max_new, temperature=temperature, top_p=top_p, seed=sample_seed(f"{tag}/{i}"))
        for i, p in enumerate(prompts(n, lo, hi, vocab, seed=sample_seed(tag)))
    ]


def run(eng, reqs, device: str) -> dict:
    """One ``generate`` call: new tokens, wall and compile seconds, tokens/s without compiling,
    the response lengths and how they ended."""
    import torch

    compile_before = eng.stats.compile_seconds
    started = time.perf_counter()
    outs = eng.generate(reqs)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    compiling = eng.stats.compile_seconds - compile_before
    seconds = wall - compiling
    lengths = sorted(o.n_tokens for o in outs)
    tokens = sum(lengths)
    return {
        "decoding": eng.decoding,
        "batch_size": eng.batch_size,
        "responses": len(outs),
        "new_tokens": tokens,
        "wall_seconds": round(wall, 2),
        "compile_seconds": round(compiling, 2),
        "new_tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        "compiled_shapes": [list(s) for s in eng.stats.shapes],
        "segments": eng.stats.segments,
        "length_min": lengths[0],
        "length_median": statistics.median(lengths),
        "length_p90": lengths[int(0.9 * (len(lengths) - 1))],
        "length_max": lengths[-1],
        "ended_by_eos": sum(o.finish == "stop" for o in outs),
        "ended_by_budget": sum(o.finish == "length" for o in outs),
    }


def step_time(
    eng, positions: int, batch: int, short: int, long: int, device: str, vocab: int, sampling
) -> dict:
    """Seconds of one decoding step with ``positions`` in use, by difference: ``batch`` prompts of
    ``positions - long`` tokens generate ``short`` then ``long`` new tokens (the end of turn never
    drawn, so every row runs to its ``max_new``); the step is the extra wall time (compiling left
    out) over the extra steps. The steps timed have positions - (long - short) .. positions in use."""
    prompt = positions - long
    if prompt < 1:
        raise ValueError(f"{positions} positions cannot hold {long} new tokens")
    temperature, top_p = sampling
    wall = {}
    for n in (short, long):
        reqs = requests(batch, prompt, prompt, n, temperature, top_p, f"steps/{positions}", vocab)
        got = run(eng, reqs, device)
        if got["new_tokens"] != batch * n:
            raise RuntimeError(
                f"expected {batch * n} new tokens, got {got['new_tokens']}: the end of turn came"
            )
        wall[n] = got["wall_seconds"] - got["compile_seconds"]
    step = (wall[long] - wall[short]) / (long - short)
    return {
        "positions": positions,
        "batch": batch,
        "prompt_tokens": prompt,
        "steps_timed": long - short,
        # a difference at or below zero: the two runs' noise exceeds the steps between them
        "step_ms": round(1000 * step, 3) if step > 0 else None,
        "new_tokens_per_s": round(batch / step, 1) if step > 0 else None,
        "wall_seconds": {str(k): round(v, 3) for k, v in wall.items()},
    }
