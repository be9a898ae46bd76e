"""Per-source defaults of the pools: hub id, config, split, local file name and field mapping.

``conf/pool/<name>.yaml`` spells the same values out (tests/test_pools.py keeps them in step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PoolSource:
    hub_id: str | None
    hub_config: str | None = None
    split: str = "train"
    file: str | None = None  # file name inside ``data_dir`` for the local copy
    fields: Mapping[str, Any] = field(default_factory=dict)


SOURCES: dict[str, PoolSource] = {
    "limo": PoolSource(
        "GAIR/LIMO",
        fields={"problem": "question", "answer": "answer", "solutions": {"long": "solution"}, "meta": {}},
    ),
    "limo_v2": PoolSource(
        "GAIR/LIMO-v2",
        fields={"problem": "question", "answer": "answer", "solutions": {"long": "solution"}, "meta": {}},
    ),
    "s1k": PoolSource(  # s1K: Gemini 2.0 Flash Thinking's traces (a list of one), s1-32B's data
        "simplescaling/s1K",
        fields={
            "problem": "question",
            "answer": None,
            "solutions": {"human": "solution", "long": ["thinking_trajectories", "attempt"]},
            "meta": {"cot_type": "cot_type", "origin": "source_type"},
        },
    ),
    "s1k_1_1": PoolSource(  # s1K-1.1: the same problems, DeepSeek-R1's traces (s1.1)
        "simplescaling/s1K-1.1",
        fields={
            "problem": "question",
            "answer": None,
            "solutions": {"human": "solution", "long": ["deepseek_thinking_trajectory", "deepseek_attempt"]},
            "meta": {"cot_type": "cot_type", "origin": "source_type"},
        },
    ),
    "openr1_math": PoolSource(
        "open-r1/OpenR1-Math-220k",
        "default",
        fields={
            "problem": "problem",
            "answer": "answer",
            "solutions": {"long": "generations"},
            "meta": {"origin": "source", "problem_type": "problem_type", "question_type": "question_type"},
            # R1 traces that math-verify judged correct and that finished their reasoning only
            "keep_if": ["correctness_math_verify", "is_reasoning_complete"],
        },
    ),
    "numina_cot": PoolSource(
        "AI-MO/NuminaMath-CoT",
        fields={
            "problem": "problem",
            "answer": None,
            "solutions": {"short": "solution"},
            "meta": {"origin": "source"},
        },
    ),
    "math_train": PoolSource(
        "DigitalLearningGmbH/MATH-lighteval",
        file="math_train.jsonl",
        fields={
            "problem": "problem",
            "answer": None,
            "solutions": {"human": "solution"},
            "meta": {"level": "level", "subject": "type"},
        },
    ),
    "gsm8k": PoolSource(
        "openai/gsm8k",
        "main",
        file="gsm8k_train.jsonl",
        fields={"problem": "question", "answer": None, "solutions": {"human": "answer"}, "meta": {}},
    ),
    "aime_historical": PoolSource(
        None,  # no hub copy with these columns: read the local file (data_dir or file)
        file="aime_1983_2023.json",
        fields={
            "problem": "problem",
            "answer": "answer",
            "solutions": {"human": "solution"},
            "meta": {
                "year": "year",
                "difficulty": "difficulty",
                "aime_number": "aime_number",
                "problem_number": "problem_number",
            },
        },
    ),
    "local_jsonl": PoolSource(
        None, fields={"problem": "problem", "answer": "answer", "solutions": {"long": "solution"}, "meta": {}}
    ),
    "distilled": PoolSource(None),  # limo-exp distill's pool.jsonl: records in limo-exp's own schema
    "mix": PoolSource(None),  # several of these as members, each with its share (limo_exp.data.mix)
    "synthetic": PoolSource(None),
    "arithmetic": PoolSource(None),  # generated: one- and two-step problems (the embedded demo)
}
