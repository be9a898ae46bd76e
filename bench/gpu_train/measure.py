"""One setting of the GPU training bench: a fresh model of the shape, either side's runner, the
clock over steps 2.., the host syncs of those steps, and the figures."""

from __future__ import annotations

import contextlib
import copy
import gc
import random
import time
import warnings
from collections import Counter

from gpu_train.checks import modeling_kept
from gpu_train.limo_side import WATCHED, run_limo
from gpu_train.settings import SETTINGS, sequences, step_work, timed_steps
from gpu_train.trl_side import DEFAULT_ATTENTION, run_trl

SYNC_MESSAGE = "called a synchronizing CUDA operation"  # what set_sync_debug_mode("warn") warns


class HostSyncs:
    """The host syncs CUDA reports while counting: ``torch.cuda.set_sync_debug_mode("warn")``
    turns each synchronizing call (``.item()``, ``.tolist()``, ``nonzero``, a copy to the host...)
    into a warning, recorded here with the Python line that made it. Without CUDA nothing can be
    counted (``result`` says so)."""

    def __init__(self, cuda: bool):
        self.cuda, self.on, self.records = cuda, False, []
        self._catch = None

    def start(self) -> None:
        if not self.cuda or self.on:
            return
        import torch

        self._catch = warnings.catch_warnings(record=True)
        self._log = self._catch.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        self.on = True

    def stop(self) -> None:
        if not self.on:
            return
        import torch

        torch.cuda.set_sync_debug_mode("default")
        self._catch.__exit__(None, None, None)
        self.records += [w for w in self._log if SYNC_MESSAGE in str(w.message)]
        self.on = False

    def result(self, steps: int) -> dict:
        if not self.cuda:
            return {"counted": False, "why": "no CUDA device: set_sync_debug_mode reports CUDA syncs only"}
        where = Counter(f"{w.filename.rsplit('site-packages/', 1)[-1]}:{w.lineno}" for w in self.records)
        return {
            "counted": True,
            "mode": "warn",
            "steps": steps,
            "count": len(self.records),
            "per_step": round(len(self.records) / steps, 2) if steps else None,
            "where": dict(where.most_common(8)),
        }


class Clock:
    """Times steps 2.. of a training run through a global optimizer hook: the device is synchronised
    when the first and when the ``steps``-th optimizer step have been queued, nowhere else, so a
    loop that queues work ahead runs as it would. ``at_first`` is called at the first; ``syncs``
    counts the host syncs between the two (steps 2..)."""

    def __init__(self, gpu: bool, steps: int, at_first=lambda: None, syncs: HostSyncs | None = None):
        self.gpu, self.steps, self.at_first = gpu, steps, at_first
        self.syncs = syncs or HostSyncs(False)
        self.calls, self.times = 0, []

    def __enter__(self):
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._handle = register_optimizer_step_post_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self.syncs.stop()
        self._handle.remove()

    def _hook(self, *_):
        self.calls += 1
        if self.calls == self.steps:
            self.syncs.stop()  # before the clock's own synchronisation
        if self.calls in (1, self.steps):
            if self.gpu:
                import torch

                torch.cuda.synchronize()
            self.times.append(time.perf_counter())
        if self.calls == 1:
            self.at_first()
            if self.steps > 1:
                self.syncs.start()

    @property
    def seconds(self) -> float:
        if self.calls != self.steps or len(self.times) != 2:
            raise RuntimeError(f"expected {self.steps} optimizer steps, saw {self.calls}")
        return self.times[1] - self.times[0]


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


def attention_for(side: str, extra: dict) -> tuple[str, str]:
    """The attention implementation of a setting and why: limo-exp's is ``attention.choose``'s
    (``auto`` unless the setting names one); TRL's is ``limo_varlen`` unless named."""
    from limo_exp.training import attention

    if side == "limo":
        return attention.choose(extra.get("attn", "auto"))
    impl = extra.get("attn", DEFAULT_ATTENTION)
    if impl == "sdpa":
        return impl, "TRL as before: sdpa, a block mask from the position ids of its padding-free row"
    return impl, f"TRL padding-free: its collator's cu_seq_lens / max_length into {impl} (no flash-attn here)"


def measure(name, args, config, gpu, device, peak_flops: float | None) -> dict:
    import torch
    from transformers import Qwen2ForCausalLM

    from limo_exp.training import attention
    from limo_exp.training.optim import changed_fraction

    side, data, per_step, extra = SETTINGS[name]
    extra = dict(extra)
    steps = timed_steps(name, args.steps)
    impl, why = attention_for(side, extra)
    for key in ("attn", "steps"):
        extra.pop(key, None)
    single, fsdp = extra.pop("single_document_sdpa", None), extra.pop("fsdp", False)
    if "checkpoint_skip_layers" in extra:  # at most the model's layers (the tiny shape has 2)
        extra["checkpoint_skip_layers"] = min(extra["checkpoint_skip_layers"], config.num_hidden_layers)
    rows = sequences(data, per_step, steps + 1, args.seq, config.vocab_size)
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
    syncs = HostSyncs(gpu)
    with contextlib.ExitStack() as stack:
        # Liger swaps modeling_qwen2's RMSNorm, MLP and RoPE for the process
        stack.enter_context(modeling_kept())
        stack.enter_context(single_document_sdpa(single))
        counting = contextlib.ExitStack()  # the attention work of the warm-up step, read on the host
        work = counting.enter_context(attention.count_attention(model))
        stack.callback(counting.close)
        clock = stack.enter_context(Clock(gpu, steps + 1, at_first=counting.close, syncs=syncs))
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
    hl = config.hidden_size * config.num_hidden_layers
    attention_flops = sum(6 * hl * s * (s + 1) for s in timed)
    flops = 6 * n_params * real
    result = {
        "side": side,
        "data": data,
        "sequences_per_step": per_step,
        "real_tokens_per_step": round(real / steps),
        "recipe": recipe,
        "real_tokens_per_s": round(real / seconds, 1),
        "mfu": round(flops / seconds / peak_flops, 4) if peak_flops else None,
        "mfu_with_attention": round((flops + attention_flops) / seconds / peak_flops, 4)
        if peak_flops
        else None,
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
        "timed_steps": steps,
        "step_seconds": round(seconds / steps, 4),
        "flops_per_step": step_work(name, config, args.seq, args.steps)[1],
        "host_syncs": syncs.result(steps),
    }
    del model, after, before
    return result
