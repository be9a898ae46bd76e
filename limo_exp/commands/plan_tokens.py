"""The token counts of one point of ``limo-exp plan``: what ``train`` will compute on (the
selected examples tokenised as ``train`` tokenises them, stepped through its step plans, with the
slowest rank's share) and what the evaluation will generate (responses, expected tokens within the
protocol's cap). Each figure says what it was read from: the data where it is readable here,
a measured or stated estimate where not."""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass


def train(c, point, gpus, shape=None, loads=None):
    """Training counts as ``train`` will log them, on the selected examples (``_examples``): the
    model's tokenizer when its files are here, else ``CHARS_PER_TOKEN`` (measured); no pool here:
    N examples at a quarter of max_length, assumed. Also the slowest rank's work, step by step."""
    from limo_exp.analysis import plan_time as T
    from limo_exp.training.shapes import local_files

    t = c.train
    n = c.data.n_samples * c.data.answers_per_question  # examples: k solutions of each of N questions
    where = local_files(c.model, c.paths.cache_dir)
    examples, read = _examples(c, point, loads or {})
    if examples and where is not None:
        from limo_exp import training

        tok = _tokenizer(where, c.model.trust_remote_code, c.model.revision)
        data = [Sized(range(len(d.input_ids)), d.n_target) for d in training.prepare(examples, tok, t)]
        source = f"the tokenizer of {where} on {read}"
    elif examples:
        data = [_estimated(e, t) for e in examples]
        source = (
            f"estimated at {T.CHARS_PER_TOKEN} characters a token ({T.CHARS_ERROR}; the model's "
            f"tokenizer is not here) on {read}"
        )
    else:
        length = max(t.max_length // 4, 2)
        data = [Sized(range(length), length - 1) for _ in range(n)]
        source = (
            f"assumed: {n:,} examples x {length:,} tokens, a quarter of train.max_length (the pool is not "
            f"readable here; the bound, N x train.max_length, is 4x)"
        )
    return counted(data, c, gpus, shape, source)


def counted(data, c, gpus, shape, source):
    """``Train`` of tokenised ``data`` (``Sized`` or ``Tokenized``) under ``c``'s recipe on ``gpus``
    processes: ``count_tokens``'s figures and the slowest rank's work, step by step."""
    from limo_exp.analysis import plan_time as T
    from limo_exp.analysis.plan import Train
    from limo_exp.training.attention_work import VARLEN
    from limo_exp.training.loop import count_tokens
    from limo_exp.training.steps import checkpointing, reads_boundaries

    t = c.train
    # auto on a GPU the plan prices (sm_80+) reads the rows' boundaries: flash_attention_2 or limo_varlen
    attn = VARLEN if c.model.attn_implementation == "auto" else c.model.attn_implementation
    count = count_tokens(data, t, gpus, c.seed, attn)
    packed = t.packing or bool(t.max_tokens_per_micro_batch) or reads_boundaries(attn)
    per_token = shape.layers * shape.hidden / shape.params if shape else 0.0
    critical = T.rank_work(data, t, gpus, c.seed, packed, per_token)
    layers = shape.layers if shape else 0
    recompute = 0.0 if not checkpointing(t) else 1 - min(t.checkpoint_skip_layers, layers) / max(layers, 1)
    mean_target = sum(d.n_target for d in data) / len(data)
    return Train(
        c.data.n_samples, len(data), count.steps, count.target, count.seen, count.real, count.squares,
        source, *critical, recompute, mean_target,
    )  # fmt: skip


def _examples(c, point, loads):
    """The selected examples and what they are: the point's; where only the suite is not readable
    here, the pool read here, curated without decontamination; none without the pool."""
    if point is not None:
        return point.examples, "the selected examples"
    got = loads.get(("pool", repr(c.pool)))  # prepare.identify's memo: the pool read, the suite not
    if not isinstance(got, tuple):
        return [], ""
    from pathlib import Path

    from limo_exp import curation
    from limo_exp.selection import choose
    from limo_exp.selection.select import NotEnoughRecords

    try:
        curated = curation.curate_cached(got[0], c.curation, {}, Path(c.paths.cache_dir) / "curated")
        examples, _ = choose.choose(curated.records, c, curated.funnel)
    except (NotEnoughRecords, ValueError, OSError):
        return [], ""
    return examples, "the pool read here, curated without decontamination (the suite is not readable here)"


def offload(c) -> str:
    """cpu where the accelerate topology offloads parameters (FSDP) or parameters / optimizer (ZeRO-3)."""
    acc = c.accelerate or {}
    fsdp, ds = acc.get("fsdp_config") or {}, acc.get("deepspeed_config") or {}
    cpu = fsdp.get("fsdp_offload_params") or "cpu" in (
        ds.get("offload_param_device"),
        ds.get("offload_optimizer_device"),
    )
    return "cpu" if cpu else "none"


@functools.cache
def _tokenizer(where: str, trust_remote_code: bool, revision: str | None):
    from limo_exp.training.models import load_tokenizer

    return load_tokenizer(where, trust_remote_code, revision)


@dataclass(frozen=True)
class Sized:
    """A tokenised sequence as ``count_tokens`` reads it: its length and its target tokens."""

    input_ids: range
    n_target: int


def _estimated(e, t) -> Sized:
    from limo_exp.analysis.plan_time import CHARS_PER_TOKEN

    prompt = int((len(e.problem) + len(t.instruction or "")) / CHARS_PER_TOKEN) + 16
    total = min(prompt + max(int(len(e.solution or "") / CHARS_PER_TOKEN), 1), t.max_length)
    return Sized(range(total), max(total - prompt, 0))


def evaluation(c, point, history, train=None, loads=None):
    """Responses (exact) and their tokens: a task's median response length in the store's earlier
    runs of the model; else the training chains' mean target length (the trained model writes
    about as long as it was taught to); else a per-benchmark prior; each within the protocol's
    cap (a budget-forced protocol's think_max + answer_max, else eval.max_gen_toks)."""
    from limo_exp.analysis.plan import Eval, Figure
    from limo_exp.analysis.plan_time import RESPONSE_PRIOR, RESPONSE_PRIOR_OTHER
    from limo_exp.evaluation import registry

    e = c.eval
    tasks, _ = registry.resolve_tasks(e.tasks, e.data_dir)
    per_task, sizes = {}, set()
    for task in tasks:
        bench = registry.benchmark_name(task)
        n, where = _size(bench, c, point, {} if loads is None else loads)
        if n is None:
            continue
        sizes.add(where)
        n = n if e.limit is None else min(n, e.limit)
        per_task[task] = n * e.samples_for(task)
    responses = sum(per_task.values())
    budget = e.budget.think_max + e.budget.answer_max if e.budget else None
    cap_one = min(e.max_gen_toks, budget) if budget else e.max_gen_toks
    cap_text = (
        f"budget forcing's think_max + answer_max = {budget:,}" if budget and budget < e.max_gen_toks
        else f"eval.max_gen_toks={e.max_gen_toks:,}"
    )  # fmt: skip
    expected, used = 0.0, set()
    for task, n in per_task.items():
        stored = history.response_tokens.get((c.model.name, task))
        bench = registry.benchmark_name(task)
        if stored:
            length, what = (
                statistics.median(stored),
                f"store: median response length of earlier runs of {c.model.name}",
            )
        elif train is not None and train.mean_target and not train.source.startswith("assumed"):
            length, what = train.mean_target, "the training chains' mean target length"
        else:
            length = RESPONSE_PRIOR.get(bench, RESPONSE_PRIOR_OTHER)
            what = "a per-benchmark prior (analysis/plan_time.py RESPONSE_PRIOR, assumed)"
        expected += min(length, cap_one) * n
        used.add(what)
    fig = Figure(
        expected,
        f"{'; '.join(sorted(used)) or 'none'}, each capped at {cap_text} a response; "
        f"benchmark sizes: {', '.join(sorted(sizes)) or 'none'}",
    )
    return Eval(responses, responses * cap_one, fig, per_task)


def _size(bench: str, c, point, loads: dict) -> tuple[int | None, str]:
    """A benchmark's problems and where the count comes from: the point's suite, else the
    benchmark read here on its own, else its published size."""
    from limo_exp.data import benchmarks

    if point is not None and bench in point.benchmarks:
        return len(point.benchmarks[bench]), "read here"
    if bench in ("synthetic", "arithmetic"):
        return c.eval.synthetic.n, "generated"
    at = ("bench", bench, c.eval.data_dir, c.eval.gpqa_seed, str((c.eval.revision or {}).get(bench)))
    if at not in loads:
        try:
            loads[at] = len(
                benchmarks.load_benchmark(
                    bench, c.eval.data_dir, gpqa_seed=c.eval.gpqa_seed,
                    revision=(c.eval.revision or {}).get(bench),
                )
            )  # fmt: skip
        except (OSError, ValueError, KeyError):
            loads[at] = None
    if loads[at] is not None:
        return loads[at], "read here"
    n = benchmarks.PUBLISHED_SIZES.get(bench)
    return n, ("published (not readable here)" if n is not None else "unknown")
