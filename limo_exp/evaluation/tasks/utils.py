"""Pure functions behind the limo_ task YAMLs: dataset, prompt, grading filter, per-doc metrics.

The dataset functions are lm-eval ``custom_dataset`` callables: lm-eval calls them with the
task's ``metadata`` as keyword arguments, and the TaskManager merges its own run-time
``metadata`` into it. Keys read here (all optional):

- ``data_dir``: folder of local benchmark files (default: the hub dataset by id)
- ``gpqa_seed``: seed of the GPQA option shuffle
- ``synthetic_n``, ``synthetic_seed``: size and seed of the synthetic demo benchmark
- ``instruction``: text appended to every question

Unset keys take the defaults of ``limo_exp.config.EvalConfig`` (through ``load_benchmark``).
"""

from __future__ import annotations

from limo_exp.config import LIMO_INSTRUCTION
from limo_exp.data.benchmarks import load_benchmark
from limo_exp.data.prompts import user_turn
from limo_exp.data.records import BenchItem
from limo_exp.evaluation.grading import grade_choice_detailed, grade_math_detailed, split_truncated

DEFAULT_INSTRUCTION = LIMO_INSTRUCTION


def build_prompt(item: BenchItem, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The user turn: the question, the lettered options for multiple choice, then the instruction."""
    return user_turn(item.problem, instruction, item.choices)


def to_doc(item: BenchItem, instruction: str = DEFAULT_INSTRUCTION) -> dict:
    return {
        "id": item.id,
        "canonical_id": item.canonical_id,
        "problem": item.problem,
        "prompt": build_prompt(item, instruction),
        "answer": item.answer,
        "answers": list(item.answers or [item.answer]),
        "choices": list(item.choices or []),
        "kind": "choice" if item.choices else "math",
    }


def docs_for(benchmark: str, **metadata) -> list[dict]:
    options = {k: int(metadata[k]) for k in ("gpqa_seed", "synthetic_n", "synthetic_seed") if k in metadata}
    revision = (metadata.get("revision") or {}).get(benchmark)
    items = load_benchmark(benchmark, metadata.get("data_dir"), revision=revision, **options)
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


def arithmetic(**metadata):
    return _dataset("arithmetic", **metadata)


def grade_one(response: str, doc: dict) -> dict:
    """One response's verdict as plain data (kept per sample in lm-eval's logged samples)."""
    response, truncated = split_truncated(response)
    if truncated:
        return {"response": response, "extracted": None, "status": "truncated", "correct": False}
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
        "no_answer": sum(v["status"] in ("no_answer", "truncated") for v in verdicts) / n,
        "truncated": sum(v["status"] == "truncated" for v in verdicts) / n,
        "timeout": sum(v["status"] == "timeout" for v in verdicts) / n,
    }
