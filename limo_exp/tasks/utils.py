"""Pure functions behind the limo_ task YAMLs: dataset, prompt, grading filter, per-doc metrics,
and the statistics over n samples per question (mean@n, unbiased pass@k, maj@k).

The dataset functions are lm-eval ``custom_dataset`` callables: lm-eval calls them with the
task's ``metadata`` as keyword arguments, and the TaskManager merges its own run-time
``metadata`` into it. Keys read here (all optional):

- ``data_dir``: folder of local benchmark files (default: the hub dataset by id)
- ``gpqa_seed``: seed of the GPQA option shuffle (default 0)
- ``synthetic_n``, ``synthetic_seed``: size and seed of the synthetic demo benchmark
- ``instruction``: text appended to every question (default: LIMO's instruction)
"""

from __future__ import annotations

import math

from limo_exp.benchmarks import load_benchmark
from limo_exp.grading import equivalent, grade_choice_detailed, grade_math_detailed
from limo_exp.prompts import LIMO_INSTRUCTION, user_turn
from limo_exp.records import BenchItem

DEFAULT_INSTRUCTION = LIMO_INSTRUCTION


def build_prompt(item: BenchItem, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The user turn: the question, the lettered options for multiple choice, then the instruction."""
    return user_turn(item.problem, instruction, item.choices)


def to_doc(item: BenchItem, instruction: str = DEFAULT_INSTRUCTION) -> dict:
    return {
        "id": item.id,
        "problem": item.problem,
        "prompt": build_prompt(item, instruction),
        "answer": item.answer,
        "answers": list(item.answers or [item.answer]),
        "choices": list(item.choices or []),
        "kind": "choice" if item.choices else "math",
    }


def docs_for(benchmark: str, **metadata) -> list[dict]:
    items = load_benchmark(
        benchmark,
        metadata.get("data_dir"),
        gpqa_seed=int(metadata.get("gpqa_seed", 0)),
        synthetic_n=int(metadata.get("synthetic_n", 20)),
        synthetic_seed=int(metadata.get("synthetic_seed", 0)),
    )
    instruction = metadata.get("instruction")
    instruction = DEFAULT_INSTRUCTION if instruction is None else instruction
    return [to_doc(i, instruction) for i in items]


def _dataset(benchmark: str, **metadata):
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs_for(benchmark, **metadata))})


def aime24(**metadata):
    return _dataset("aime24", **metadata)


def aime25(**metadata):
    return _dataset("aime25", **metadata)


def amc23(**metadata):
    return _dataset("amc23", **metadata)


def math500(**metadata):
    return _dataset("math500", **metadata)


def olympiadbench(**metadata):
    return _dataset("olympiadbench", **metadata)


def gpqa_diamond(**metadata):
    return _dataset("gpqa_diamond", **metadata)


def synthetic(**metadata):
    return _dataset("synthetic", **metadata)


def grade_one(response: str, doc: dict) -> dict:
    """One response's verdict as plain data (kept per sample in lm-eval's logged samples)."""
    if doc["kind"] == "choice":
        v = grade_choice_detailed(response, doc["answer"])
    else:
        golds = doc["answers"]
        v = grade_math_detailed(response, golds[0] if len(golds) == 1 else golds)
    return {"response": response, "extracted": v.extracted, "status": v.status, "correct": v.correct}


def grade_filter(resps, docs):
    """lm-eval filter: each doc's list of n responses -> list of n verdict dicts."""
    return [[grade_one(r, doc) for r in rs] for rs, doc in zip(resps, docs)]


def process_results(doc: dict, results: list) -> dict[str, float]:
    """Per-doc metrics over its n samples: mean correctness (mean@n), no-answer and timeout rates."""
    verdicts = results[0] if results and isinstance(results[0], list) else results
    n = len(verdicts)
    return {
        "exact_match": sum(v["correct"] for v in verdicts) / n,
        "no_answer": sum(v["status"] == "no_answer" for v in verdicts) / n,
        "timeout": sum(v["status"] == "timeout" for v in verdicts) / n,
    }


# ---------------------------------------------------------------- sampling statistics over n samples


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one question with c correct among n samples: 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_correct(verdicts: list[dict]) -> bool:
    """Vote over the extracted answers; samples with no answer don't vote. Answers are grouped by
    value, not spelling (``1/2``, ``0.5`` and ``\\frac{1}{2}`` are one vote; all correct answers
    are one class). Ties go to the class seen first. Right when the winning class is correct."""
    classes: list[list[dict]] = []
    for v in (v for v in verdicts if v.get("extracted")):
        for c in classes:
            if c[0]["correct"] == v["correct"] and (
                v["correct"] or equivalent(c[0]["extracted"], v["extracted"])
            ):
                c.append(v)
                break
        else:
            classes.append([v])
    if not classes:
        return False
    top = max(len(c) for c in classes)
    return next(c for c in classes if len(c) == top)[0]["correct"]


def mean_stderr(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std with n-1, over questions; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in values) / (n - 1)
    return mean, math.sqrt(var / n)


def sampling_metrics(per_question: list[list[dict]], pass_k: tuple[int, ...] | list[int]) -> dict[str, float]:
    """mean@n (+stderr), pass@k and maj@k (+stderr) for every k <= n, from per-question verdict lists."""
    n = min(len(v) for v in per_question)
    out: dict[str, float] = {}
    out["mean_at_n"], out["mean_at_n_stderr"] = mean_stderr(
        [sum(v["correct"] for v in vs) / len(vs) for vs in per_question]
    )
    for k in sorted(set(pass_k)):
        if k > n:
            continue
        out[f"pass_at_{k}"], out[f"pass_at_{k}_stderr"] = mean_stderr(
            [pass_at_k(len(vs), sum(v["correct"] for v in vs), k) for vs in per_question]
        )
        out[f"maj_at_{k}"], out[f"maj_at_{k}_stderr"] = mean_stderr(
            [float(majority_correct(vs[:k])) for vs in per_question]
        )
    return out
