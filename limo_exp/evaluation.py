"""Evaluate a checkpoint on limo_ lm-eval tasks; return MLflow-ready metrics, samples and settings.

    result = evaluate("outputs/ckpt", ["limo_paper"], data_dir="../shared/data/eval")
    result.metrics["eval/limo_math500/exact_match"]

Run-time settings reach the tasks as TaskManager metadata (data_dir, gpqa_seed, instruction,
synthetic_n, synthetic_seed -> the custom_dataset functions of limo_exp/tasks/utils.py);
num_samples sets each task's ``repeats``; sampling settings go in as ``gen_kwargs``.
mean@n is lm-eval's ``exact_match`` (its stderr is over questions); unbiased pass@k and maj@k
are computed from the per-sample verdicts that the tasks' grading filter keeps
(``limo_exp.tasks.utils.sampling_metrics``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from limo_exp import benchmarks, grading
from limo_exp.tasks import GROUPS, TASKS, TASKS_DIR
from limo_exp.tasks.utils import DEFAULT_INSTRUCTION, sampling_metrics

BACKENDS = ("auto", "hf", "vllm")


log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    metrics: dict[str, float]  # eval/<task>/<metric>, MLflow-safe names
    samples: dict[str, list[dict]]  # task -> one dict per generated sample
    settings: dict[str, str]  # everything needed to reproduce / to log as params
    raw: dict[str, Any] = field(default_factory=dict)  # lm-eval results, JSON-serialisable


# ---------------------------------------------------------------- naming, settings


def metric_name(task: str, lm_eval_key: str) -> str:
    """``exact_match,none`` -> ``eval/<task>/exact_match``; other filters become a suffix
    (``exact_match,flexible`` -> ``.../exact_match/flexible``); ``@`` -> ``_at_``."""
    from limo_exp.tracking import metric_name as mlflow_safe

    metric, _, filt = lm_eval_key.partition(",")
    return mlflow_safe(f"eval/{task}/{metric}" if filt in ("", "none") else f"eval/{task}/{metric}/{filt}")


def default_gen_kwargs(
    max_gen_toks: int = 32768, temperature: float = 0.0, top_p: float = 1.0
) -> dict[str, Any]:
    """Greedy when temperature is 0, else sampling with temperature / top_p. No stop strings:
    generation runs to the end-of-turn token or max_gen_toks."""
    kw: dict[str, Any] = {"until": [], "max_gen_toks": int(max_gen_toks)}
    if temperature and temperature > 0:
        kw.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
    else:
        kw.update(do_sample=False, temperature=0.0)
    return kw


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def check_tasks(tasks: list[str], index: dict | None = None) -> None:
    """Raise ValueError naming the valid limo_ tasks if any requested name is unknown."""
    valid = set(TASKS) | set(GROUPS)
    if index is not None:
        valid &= set(index)
    unknown = [t for t in tasks if t not in valid]
    if unknown or not tasks:
        raise ValueError(f"unknown task(s) {unknown or tasks}; valid: {', '.join(sorted(valid))}")


def _data_source(task: str, data_dir: str | None) -> str:
    bench = task.removeprefix("limo_")
    if bench == "synthetic":
        return "generated"
    if data_dir is None:
        hub_id, parts, _ = benchmarks.SOURCES[bench]
        return f"hub:{hub_id} {[p for p, _ in parts]}"
    return "sha256:" + benchmarks.file_hash(bench, data_dir)


def choose_backend(requested: str) -> str:
    """``auto``: vLLM when CUDA is present and vllm imports, else lm-eval's ``hf`` backend."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; valid: {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    import importlib.util

    import torch

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"


def model_context_length(model_path: str, trust_remote_code: bool = False) -> int | None:
    """The model's maximum positions (config.json), or None when it cannot be read."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None
    return getattr(config, "max_position_embeddings", None)


def fit_generation_budget(max_gen_toks: int, context: int | None, prompt_reserve: int = 2048) -> int:
    """Clamp the generation budget so that a prompt of up to ``min(prompt_reserve, context/4)``
    tokens still fits the context (LIMO's 32768 on a 32768-position model: 30720). Logged as
    ``max_gen_toks`` next to ``max_gen_toks_requested``."""
    if not context or max_gen_toks + min(prompt_reserve, context // 4) <= context:
        return max_gen_toks
    fitted = context - min(prompt_reserve, context // 4)
    log.warning(
        "max_gen_toks %d does not fit the model's %d positions with a prompt: using %d",
        max_gen_toks,
        context,
        fitted,
    )
    return fitted


def _model_args(
    backend: str,
    model_path: str,
    *,
    dtype: str,
    seed: int,
    tensor_parallel_size: int,
    trust_remote_code: bool,
) -> dict:
    if backend == "hf":
        return {"pretrained": model_path, "dtype": dtype, "trust_remote_code": trust_remote_code}
    if backend == "vllm":  # GPU only; not exercised by the CPU tests
        return {
            "pretrained": model_path,
            "dtype": dtype,
            "tensor_parallel_size": tensor_parallel_size,
            "seed": seed,
            "trust_remote_code": trust_remote_code,
        }
    raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")


# ---------------------------------------------------------------- evaluate


def evaluate(
    model_path: str,
    tasks: list[str],
    *,
    data_dir: str | None = None,
    limit: int | None = None,
    backend: str = "hf",
    batch_size: int = 1,
    max_gen_toks: int = 32768,
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    pass_k: tuple[int, ...] | list[int] = (1,),
    seed: int = 0,
    system_prompt: str | None = None,
    instruction: str = DEFAULT_INSTRUCTION,
    gpqa_seed: int = 0,
    tensor_parallel_size: int = 1,
    device: str = "cpu",
    dtype: str = "float32",
    synthetic_n: int = 20,
    synthetic_seed: int = 0,
    trust_remote_code: bool = False,
) -> EvalResult:
    """Run lm-eval on ``tasks`` (limo_ task or group names) and collect metrics, samples and settings."""
    tasks = list(tasks)
    model_path = str(model_path)  # lm-eval treats anything but a str as a model object
    check_tasks(tasks)
    backend = choose_backend(backend)
    if num_samples < 1:
        raise ValueError("num_samples must be >= 1")
    data_dir = str(data_dir) if data_dir is not None else None

    import lm_eval
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    metadata = {
        "data_dir": data_dir,
        "gpqa_seed": gpqa_seed,
        "instruction": instruction,
        "synthetic_n": synthetic_n,
        "synthetic_seed": synthetic_seed,
    }
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    check_tasks(tasks, tm.task_index)  # a YAML that failed to load is missing from the index
    kept, skipped = benchmarks.resolve_tasks(tasks, data_dir)
    if skipped:  # a group member without a local file: run the rest, say so, log it
        for t, why in skipped.items():
            log.warning("skipping %s: %s", t, why)
        tasks = kept
    loaded = tm.load(tasks)  # builds the datasets: a missing local file fails here, before the model loads
    for task_obj in loaded["tasks"].values():
        task_obj.set_config(key="repeats", value=int(num_samples))
    top_level = [loaded["groups"].get(t) or loaded["tasks"][t] for t in tasks]

    model_args = _model_args(
        backend,
        model_path,
        dtype=dtype,
        seed=seed,
        tensor_parallel_size=tensor_parallel_size,
        trust_remote_code=trust_remote_code,
    )
    requested_gen_toks = max_gen_toks
    context = model_context_length(model_path, trust_remote_code)
    max_gen_toks = fit_generation_budget(max_gen_toks, context)
    if context:  # prompt + generation must fit the model's positions
        model_args["max_model_len" if backend == "vllm" else "max_length"] = context
    extra = {"batch_size": batch_size, "device": device} if backend == "hf" else {"batch_size": batch_size}
    lm = get_model(backend).create_from_arg_obj(model_args, extra)
    template = lm.chat_template(True) or ""
    gen_kwargs = default_gen_kwargs(max_gen_toks, temperature, top_p)

    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=top_level,
        task_manager=tm,
        limit=limit,
        gen_kwargs=gen_kwargs,
        apply_chat_template=True,
        system_instruction=system_prompt,
        log_samples=True,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        bootstrap_iters=1000,
    )
    raw_samples = out.pop("samples", {}) or {}
    raw = json.loads(json.dumps(out, default=str))

    metrics: dict[str, float] = {}
    for task, res in raw.get("results", {}).items():
        for key, val in res.items():
            if isinstance(val, (int, float)) and not isinstance(val, bool) and "," in key:
                metrics[metric_name(task, key)] = float(val)

    samples: dict[str, list[dict]] = {}
    for task, logged in raw_samples.items():
        rows, per_question = [], []
        for s in sorted(logged, key=lambda s: s["doc_id"]):
            verdicts = s["filtered_resps"][0]
            per_question.append(verdicts)
            prompt = s["arguments"][0][0] if s["arguments"] else ""
            for i, v in enumerate(verdicts):
                rows.append(
                    {
                        "task": task,
                        "doc_id": s["doc_id"],
                        "id": s["doc"]["id"],
                        "sample": i,
                        "prompt": prompt,
                        "gold": s["doc"]["answers"],
                        **v,
                    }
                )
        samples[task] = rows
        if per_question:
            for name, val in sampling_metrics(per_question, pass_k).items():
                metrics[f"eval/{task}/{name}"] = val
            metrics[f"eval/{task}/no_answer_count"] = float(sum(r["status"] == "no_answer" for r in rows))
            metrics[f"eval/{task}/timeout_count"] = float(sum(r["status"] == "timeout" for r in rows))
            metrics[f"eval/{task}/n_questions"] = float(len(per_question))

    leaves, _ = benchmarks.resolve_tasks(tasks, None)  # groups expanded
    settings = {
        "backend": backend,
        "backend_version": _version("vllm" if backend == "vllm" else "transformers"),
        "lm_eval_version": _version("lm_eval"),
        "model_path": str(model_path),
        "dtype": dtype,
        "device": device,
        "tensor_parallel_size": str(tensor_parallel_size),
        "batch_size": str(batch_size),
        "tasks": ",".join(tasks),
        "limit": str(limit),
        "max_gen_toks": str(max_gen_toks),
        "max_gen_toks_requested": str(requested_gen_toks),
        "model_context_length": str(context),
        "num_samples": str(num_samples),
        "temperature": str(temperature),
        "top_p": str(top_p),
        "pass_k": ",".join(str(k) for k in pass_k),
        "seed": str(seed),
        "gen_kwargs": json.dumps(gen_kwargs, sort_keys=True),
        "system_prompt": "" if system_prompt is None else system_prompt,
        "instruction": instruction,
        "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest() if template else "none",
        "grader_version": grading.GRADER_VERSION,
        "math_verify_version": grading.MATH_VERIFY_VERSION,
        "grader_timeout_s": str(grading.DEFAULT_TIMEOUT_S),
        "gpqa_seed": str(gpqa_seed),
        "data_dir": "" if data_dir is None else data_dir,
        "skipped_tasks": "; ".join(f"{t}: {why}" for t, why in skipped.items()) or "none",
        "synthetic": f"n={synthetic_n},seed={synthetic_seed}",
    }
    for leaf in leaves:
        settings[f"data/{leaf}"] = _data_source(leaf, data_dir)
        settings[f"task_version/{leaf}"] = (
            str(loaded["tasks"][leaf].VERSION) if leaf in loaded["tasks"] else ""
        )
    return EvalResult(metrics=metrics, samples=samples, settings=settings, raw=raw)


def evaluate_from_cfg(model_path: str, eval_cfg: Any, **overrides: Any) -> EvalResult:
    """Call evaluate with the keys of a conf/eval/*.yaml group (a mapping); overrides win."""
    cfg = dict(eval_cfg)
    synth = dict(cfg.pop("synthetic", None) or {})
    kw = {
        k: cfg[k]
        for k in (
            "data_dir",
            "limit",
            "backend",
            "batch_size",
            "max_gen_toks",
            "num_samples",
            "temperature",
            "top_p",
            "system_prompt",
            "instruction",
            "gpqa_seed",
            "tensor_parallel_size",
        )
        if k in cfg
    }
    if "pass_k" in cfg:
        kw["pass_k"] = tuple(cfg["pass_k"])
    kw.update(synthetic_n=synth.get("n", 20), synthetic_seed=synth.get("seed", 0))
    kw.update(overrides)
    return evaluate(model_path, list(cfg["tasks"]), **kw)
