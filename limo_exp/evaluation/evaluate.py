"""Evaluate a model on limo_ lm-eval tasks; return MLflow-ready metrics, samples and settings.

    result = evaluate("outputs/ckpt", EvalConfig(tasks=["limo_paper"], data_dir="../shared/data/eval"))
    result.metrics["math500/accuracy"]     # the headline; the rest under eval/limo_math500/...

Run-time settings reach the tasks as TaskManager metadata (data_dir, gpqa_seed, instruction,
synthetic_n, synthetic_seed -> the custom_dataset functions of tasks/utils.py); num_samples
sets each task's ``repeats``; sampling settings go in as ``gen_kwargs``. mean@n is lm-eval's
``exact_match``, logged as the benchmark's headline ``<benchmark>/accuracy`` (its stderr is over
questions); unbiased pass@k and maj@k are computed from the per-sample verdicts that the tasks'
grading filter keeps (``metrics.sampling_metrics``); copies of the headline are not logged again.
``evaluate_to_dir`` also writes results, settings and per-sample outputs as files (a sample line
reads id, verdict, answer, gold, response first and the prompt last).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limo_exp.config import EvalConfig
from limo_exp.evaluation import grading, registry
from limo_exp.evaluation.generation import backend as be
from limo_exp.evaluation.generation.backend import make_engine
from limo_exp.evaluation.generation.engines import engine_options, hf_decoding
from limo_exp.evaluation.metrics import answer_counts, length_metrics, sampling_metrics
from limo_exp.evaluation.store import model_fingerprint, response_store
from limo_exp.evaluation.stored_lm import Budget, StoredLM
from limo_exp.tracking.names import eval_metric, metric_name, sampling_metric

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    metrics: dict[str, float]  # <benchmark>/accuracy first, then eval/<task>/<metric> (tracking.names)
    samples: dict[str, list[dict]]  # task -> one dict per generated sample
    settings: dict[str, str]  # everything needed to reproduce / to log as tags
    raw: dict[str, Any] = field(default_factory=dict)  # lm-eval results, JSON-serialisable
    artifacts: list[Path] = field(default_factory=list)  # files written by evaluate_to_dir
    responses: list[dict] = field(default_factory=list)  # the store records this evaluation used


def evaluate(
    model_path: str,
    suite: EvalConfig,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    seed: int = 0,
    store_dir: str | Path | None = None,
    revision: str | None = None,
    attn_implementation: str = "auto",
) -> EvalResult:
    """Run lm-eval on ``suite.tasks`` (limo_ task or group names) through ``StoredLM``; collect
    metrics, samples, settings. Stored responses are served without loading the model."""
    checked = registry.check_suite(suite)  # tasks, files, per-task settings (narrowed to eval.tasks)
    suite, skipped = checked.config, checked.skipped
    tasks = list(suite.tasks)
    model_path = str(model_path)
    backend = be.choose_backend(suite.backend)
    data_dir = str(suite.data_dir) if suite.data_dir is not None else None

    import lm_eval
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    metadata = {
        "data_dir": data_dir,
        "gpqa_seed": suite.gpqa_seed,
        "instruction": suite.instruction,
        "synthetic_n": suite.synthetic.n,
        "synthetic_seed": suite.synthetic.seed,
        "revision": dict(suite.revision or {}),
    }
    tm = TaskManager(include_path=str(registry.TASKS_DIR), include_defaults=False, metadata=metadata)
    registry.check_tasks(tasks, tm.task_index)  # a YAML that failed to load is missing from the index
    if skipped:  # a group member without a local file: run the rest, say so, log it
        for t, why in skipped.items():
            log.warning("skipping %s: %s", t, why)
        tasks = checked.kept
    leaves = checked.kept  # groups expanded
    loaded = tm.load(tasks)  # builds the datasets: a missing local file fails here, before the model loads
    for name, task_obj in loaded["tasks"].items():
        task_obj.set_config(key="repeats", value=suite.samples_for(name))
    top_level = [loaded["groups"].get(t) or loaded["tasks"][t] for t in tasks]

    context = be.model_context_length(model_path, trust_remote_code, revision=revision)
    max_gen_toks = be.fit_generation_budget(suite.max_gen_toks, context)
    budget = Budget(**suite.budget.to_dict()) if suite.budget else None
    if budget and context and budget.think_max + budget.answer_max + 256 > context:
        raise ValueError(
            f"eval.budget: think_max + answer_max = {budget.think_max + budget.answer_max} tokens leave no room "
            f"for a prompt in the model's {context} positions"
        )
    tok = AutoTokenizer.from_pretrained(model_path, revision=revision, trust_remote_code=trust_remote_code)
    fp = model_fingerprint(model_path, revision)
    store = response_store(suite.store, store_dir, fp)  # auto without a store_dir: none
    # vllm: tensor and data parallel resolved here, from the model and the GPUs (before any load)
    opts = engine_options(
        suite, context=context, dtype=dtype, seed=seed, device=device, attn_implementation=attn_implementation,
        revision=revision, trust_remote_code=trust_remote_code, backend=backend, model_path=model_path,
    )  # fmt: skip
    lm = StoredLM(model_path, tok, store, lambda: make_engine(backend, model_path, opts), budget)
    template = lm.chat_template(True) or ""
    gen_kwargs = be.default_gen_kwargs(max_gen_toks, suite.temperature, suite.top_p)
    be.warn_slow_generation(backend, device, loaded["tasks"], suite, max_gen_toks)

    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=top_level,
        task_manager=tm,
        limit=suite.limit,
        gen_kwargs=gen_kwargs,
        apply_chat_template=True,
        system_instruction=suite.system_prompt,
        log_samples=True,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        bootstrap_iters=1000,
    )
    raw_samples = out.pop("samples", {}) or {}
    raw = json.loads(json.dumps(out, default=str))
    metrics, samples = _collect(raw, raw_samples, suite.pass_k, lm)

    settings = {
        "backend": backend,
        "backend_version": be.package_version("vllm" if backend == "vllm" else "transformers"),
        "lm_eval_version": be.package_version("lm_eval"),
        "model_path": str(model_path),
        "model_fingerprint": fp,
        "response_store": str(store.path) if store.path else "off",
        "dtype": dtype,
        "device": device,
        "tensor_parallel_size": str(opts.tensor_parallel_size),  # as resolved (auto: from model and GPUs)
        "data_parallel_size": str(opts.data_parallel_size),
        "batch_size": str(suite.batch_size),
        "hf_decoding": hf_decoding(suite.hf_decoding, device) if backend == "hf" else "n/a",
        "attn_implementation": attn_implementation,
        "tasks": ",".join(tasks),
        "limit": str(suite.limit),
        "max_gen_toks": str(max_gen_toks),
        "max_gen_toks_requested": str(suite.max_gen_toks),
        "model_context_length": str(context),
        "num_samples": json.dumps({t: suite.samples_for(t) for t in leaves}, sort_keys=True)
        if isinstance(suite.num_samples, dict)
        else str(suite.num_samples),
        "temperature": str(suite.temperature),
        "top_p": str(suite.top_p),
        "pass_k": ",".join(str(k) for k in suite.pass_k),
        "seed": str(seed),
        "gen_kwargs": json.dumps(gen_kwargs, sort_keys=True),
        "budget": json.dumps(suite.budget.to_dict(), sort_keys=True) if suite.budget else "none",
        "system_prompt": "" if suite.system_prompt is None else suite.system_prompt,
        "instruction": suite.instruction,
        "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest() if template else "none",
        "grader_version": grading.GRADER_VERSION,
        "math_verify_version": grading.MATH_VERIFY_VERSION,
        "grader_timeout_s": str(grading.DEFAULT_TIMEOUT_S),
        "gpqa_seed": str(suite.gpqa_seed),
        "data_dir": "" if data_dir is None else data_dir,
        "skipped_tasks": "; ".join(f"{t}: {why}" for t, why in skipped.items()) or "none",
        "synthetic": f"n={suite.synthetic.n},seed={suite.synthetic.seed}",
    }
    for leaf in leaves:
        settings[f"data/{leaf}"] = registry.data_source(leaf, data_dir)
        settings[f"task_version/{leaf}"] = (
            str(loaded["tasks"][leaf].VERSION) if leaf in loaded["tasks"] else ""
        )
    responses = [{"key": k, "model": fp, **v.__dict__} for k, v in lm.served.values()]
    return EvalResult(metrics=metrics, samples=samples, settings=settings, raw=raw, responses=responses)


def _collect(
    raw: dict, raw_samples: dict, pass_k: list[int], lm: StoredLM | None = None
) -> tuple[dict[str, float], dict[str, list[dict]]]:
    """lm-eval's results and logged samples -> MLflow metrics and one row per generated sample."""
    metrics: dict[str, float] = {}
    found = {
        metric_name(task, key): float(val)
        for task, res in raw.get("results", {}).items()
        for key, val in res.items()
        if isinstance(val, (int, float)) and not isinstance(val, bool) and "," in key
    }
    metrics |= {k: v for k, v in found.items() if not k.startswith("eval/")}  # the headlines first
    metrics |= {k: v for k, v in found.items() if k.startswith("eval/")}

    samples: dict[str, list[dict]] = {}
    for task, logged in raw_samples.items():
        rows, per_question = [], []
        for s in sorted(logged, key=lambda s: s["doc_id"]):
            verdicts = s["filtered_resps"][0]
            per_question.append(verdicts)
            prompt = s["arguments"][0][0] if s["arguments"] else ""
            for i, v in enumerate(verdicts):
                rows.append(sample_row(task, s, i, v, prompt, _generation(lm, task, s["doc_id"], i)))
        samples[task] = rows
        if per_question:
            n = min(len(v) for v in per_question)
            for name, val in sampling_metrics(per_question, pass_k).items():
                if sampling_metric(task, name, n) is not None:
                    metrics[sampling_metric(task, name, n)] = val
            metrics[eval_metric(task, "n_questions")] = float(len(per_question))
            metrics |= answer_counts(task, rows)  # n_no_answer counts truncated ones, as no_answer does
            metrics |= length_metrics(task, rows)
    if lm is not None:
        for task, (seconds, tokens) in lm.timing.per_task.items():
            metrics[f"eval/{task}/gen_tokens_per_s"] = tokens / seconds if seconds else float("nan")
        metrics["eval/responses_generated"] = float(lm.store.added)
        metrics["eval/responses_from_store"] = float(lm.store.hits)
        if getattr(lm._engine, "start_seconds", None) is not None:  # kept out of gen_tokens_per_s
            metrics["eval/engine_start_seconds"] = lm._engine.start_seconds
        stats = getattr(lm._engine, "stats", None)  # the hf engine's decoding, when it ran
        if stats is not None:
            metrics["eval/compile_seconds"] = stats.compile_seconds  # kept out of gen_tokens_per_s
            metrics["eval/compiled_shapes"] = float(len(stats.shapes))
            metrics["eval/decode_segments"] = float(stats.segments)
    return metrics, samples


# what a reader looks at first in a samples file: which problem, right or not, the answer against
# the gold, the response; the prompt (long, and the same for every sample of a problem) last
SAMPLE_FIELDS_FIRST = ("id", "sample", "correct", "status", "extracted", "gold", "response")


def sample_row(task: str, logged: dict, i: int, verdict: dict, prompt: str, generation: dict) -> dict:
    """One line of ``samples_<task>.jsonl``: ``SAMPLE_FIELDS_FIRST``, then the rest, the prompt last."""
    row = {
        "task": task,
        "doc_id": logged["doc_id"],
        "id": logged["doc"]["id"],
        "canonical_id": logged["doc"].get("canonical_id", ""),
        "sample": i,
        "gold": logged["doc"]["answers"],
        "kind": logged["doc"].get("kind", "math"),
        **verdict,
        **generation,
    }
    first = {k: row.pop(k) for k in SAMPLE_FIELDS_FIRST if k in row}
    return first | row | {"prompt": prompt}


def _generation(lm: StoredLM | None, task: str, doc_id: int, sample: int) -> dict:
    served = lm.served.get((task, doc_id, sample)) if lm is not None else None
    if served is None:
        return {}
    s = served[1]
    return {"n_tokens": s.n_tokens, "finish": s.finish, "think_tokens": s.think_tokens, "waits": s.waits}


def evaluate_to_dir(
    model_path: str,
    suite: EvalConfig,
    output_dir: str | Path,
    **options,
) -> EvalResult:
    """``evaluate`` on CUDA when present, else CPU; writes results.json, settings.json,
    samples_<task>.jsonl and responses.jsonl (the store records used) into ``output_dir``
    (listed in ``EvalResult.artifacts``). ``options``: those of ``evaluate``."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    res = evaluate(model_path, suite, device=device, **options)
    seconds = time.perf_counter() - started  # the cost side of "cost per correct answer"
    parallel = int(res.settings["tensor_parallel_size"]) * int(res.settings["data_parallel_size"])
    devices = parallel if res.settings["backend"] == "vllm" else 1  # the GPUs vLLM's engines held
    res.metrics |= {"cost/eval_seconds": seconds, "cost/eval_device_hours": seconds * devices / 3600}
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    res.settings = {k: str(v) for k, v in res.settings.items()}
    files = {"results.json": res.raw, "settings.json": res.settings}
    for name, obj in files.items():
        (output_dir / name).write_text(json.dumps(obj, indent=2, default=str))
        res.artifacts.append(output_dir / name)
    for task, rows in res.samples.items():
        p = output_dir / f"samples_{task}.jsonl"
        with p.open("w") as f:
            for row in rows:
                f.write(json.dumps(row, default=str) + "\n")
        res.artifacts.append(p)
    p = output_dir / "responses.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in res.responses))
    res.artifacts.append(p)
    return res
