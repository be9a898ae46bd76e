"""The six LIMO-paper benchmarks (and the offline synthetic one) as lists of BenchItem.

``load_benchmark(name)`` reads the Hugging Face hub dataset by id (``datasets`` is imported
only then); ``load_benchmark(name, data_dir)`` reads local files instead, named as in
``shared/data/eval`` (``math500.jsonl``, ``aime24.jsonl``, ``aime25_I.jsonl`` +
``aime25_II.jsonl``, ``amc23.jsonl``, ``olympiadbench.jsonl``, ``gpqa_diamond.jsonl|.csv``).
Whatever the source, answers come out as strings (``27.0`` -> ``"27"``), OlympiadBench
multi-answer golds are split into ``answers``, and GPQA's four options are shuffled by a
permutation seeded from ``(gpqa_seed, sha256(question))``, the gold letter computed from it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

from limo_exp.config import EvalConfig, SyntheticConfig
from limo_exp.data.answers import split_answers
from limo_exp.data.records import BenchItem

# name -> (hub id, [(config, split), ...], local file names)
SOURCES: dict[str, tuple[str | None, list[tuple[str | None, str]], list[str]]] = {
    "aime24": ("Maxwell-Jia/AIME_2024", [(None, "train")], ["aime24.jsonl"]),
    "aime25": (
        "opencompass/AIME2025",
        [("AIME2025-I", "test"), ("AIME2025-II", "test")],
        ["aime25_I.jsonl", "aime25_II.jsonl"],
    ),
    "amc23": ("math-ai/amc23", [(None, "test")], ["amc23.jsonl"]),
    "math500": ("HuggingFaceH4/MATH-500", [(None, "test")], ["math500.jsonl"]),
    "olympiadbench": ("Hothan/OlympiadBench", [("OE_TO_maths_en_COMP", "train")], ["olympiadbench.jsonl"]),
    "gpqa_diamond": (
        "Idavidrein/gpqa",
        [("gpqa_diamond", "train")],
        ["gpqa_diamond.jsonl", "gpqa_diamond.csv"],
    ),
    "synthetic": (None, [], []),
    "arithmetic": (None, [], []),  # generated: the embedded demo's one- and two-step problems
}
BENCHMARKS = tuple(SOURCES)
# the problem counts the sources publish (limo-exp plan's sizes where the data is not readable here)
PUBLISHED_SIZES = {"aime24": 30, "aime25": 30, "amc23": 40, "math500": 500, "olympiadbench": 675}
PUBLISHED_SIZES["gpqa_diamond"] = 198
LETTERS = "ABCD"


def _check(name: str) -> None:
    if name not in SOURCES:
        raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(BENCHMARKS)}")


def normalize_answer(value: Any) -> str:
    """Gold answers as the same string whatever the source: ``27.0`` (float or str) -> ``"27"``,
    ``"025"`` -> ``"25"`` (AIME's zero padding), ``336^\\circ`` / ``336°`` -> ``"336"``, text stripped."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = _DEGREES.sub("", str(value).strip()).strip()
    head, dot, tail = text.partition(".")
    if dot and tail and set(tail) == {"0"} and head.lstrip("-").isdigit():
        return head
    if text.isdigit():
        return str(int(text))
    return text


_DEGREES = re.compile(r"\s*(?:\^\s*\{?\s*\\circ\s*\}?|°)$")


def _get(row: dict, *keys: str, default: Any = None) -> Any:
    """First present, non-null field among ``keys`` (hub and local files spell fields differently)."""
    for k in keys:
        if row.get(k) is not None:
            return row[k]
    return default


def _read_local(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    rows = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not a JSON line ({e.msg} at column {e.colno})") from None
    return rows


def local_files(name: str, data_dir: str | Path) -> list[Path]:
    """The local files a benchmark is read from (GPQA: the first of .jsonl/.csv that exists)."""
    _check(name)
    paths = [Path(data_dir) / f for f in SOURCES[name][2]]
    if name == "gpqa_diamond":
        found = [p for p in paths if p.exists()]
        return found[:1] or paths[:1]
    return paths


def file_hash(name: str, data_dir: str | Path) -> str:
    """sha256 over the bytes of the benchmark's local file(s), in order."""
    h = hashlib.sha256()
    for p in local_files(name, data_dir):
        h.update(p.read_bytes())
    return h.hexdigest()


def _rows(
    name: str, data_dir: str | Path | None, revision: str | None = None
) -> list[tuple[str | None, list[dict]]]:
    """[(part, rows)]: one part per hub config / local file."""
    hub_id, parts, _ = SOURCES[name]
    if data_dir is not None:
        paths = local_files(name, data_dir)
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"{name}: missing local file(s) {missing}")
        return (
            [(cfg, _read_local(p)) for (cfg, _), p in zip(parts, paths)]
            if name == "aime25"
            else [(None, _read_local(paths[0]))]
        )
    from limo_exp.data import hub  # datasets is imported only when a hub benchmark is asked for

    return [(cfg, list(hub.load(hub_id, cfg, split, revision))) for cfg, split in parts]


def _math_item(task: str, rid: Any, problem: str, answer: Any, **meta: Any) -> BenchItem:
    ans = normalize_answer(answer)
    return BenchItem(
        task=task,
        id=str(rid),
        problem=problem,
        answer=ans,
        answers=[ans],
        meta={k: v for k, v in meta.items() if v is not None},
    )


def _olympiad_item(row: dict) -> BenchItem:
    final = row["final_answer"]
    final = final if isinstance(final, list) else [final]
    if row.get("is_multiple_answer"):
        answers = [a for f in final for a in split_answers(str(f))]
    else:
        answers = [str(f).replace("$", "").strip().rstrip(".").strip() for f in final]
    answers = [normalize_answer(a) for a in answers]
    problem = row["question"] if not row.get("context") else f"{row['context']}\n\n{row['question']}"
    meta = {k: row.get(k) for k in ("unit", "answer_type", "subfield", "is_multiple_answer")}
    return BenchItem(
        task="olympiadbench",
        id=str(row["id"]),
        problem=problem,
        answer=", ".join(answers),
        answers=answers,
        meta={k: v for k, v in meta.items() if v is not None},
    )


def gpqa_permutation(question: str, seed: int) -> list[int]:
    """Order of [correct, incorrect 1, 2, 3] as shown, seeded by (seed, sha256(question))."""
    qhash = hashlib.sha256(question.encode()).hexdigest()
    order = [0, 1, 2, 3]
    random.Random(f"{seed}:{qhash}").shuffle(order)
    return order


def _gpqa_item(i: int, row: dict, seed: int) -> BenchItem:
    q = row["Question"].strip()
    options = [row["Correct Answer"]] + [row[f"Incorrect Answer {k}"] for k in (1, 2, 3)]
    order = gpqa_permutation(q, seed)
    choices = [str(options[j]).strip() for j in order]
    gold = LETTERS[order.index(0)]
    rid = _get(row, "Record ID", "id", default=hashlib.sha256(q.encode()).hexdigest()[:12])
    meta = {"domain": row.get("High-level domain"), "gpqa_seed": seed, "explanation": row.get("Explanation")}
    return BenchItem(
        task="gpqa_diamond",
        id=str(rid),
        problem=q,
        answer=gold,
        answers=[gold],
        choices=choices,
        meta={k: v for k, v in meta.items() if v is not None},
    )


def load_benchmark(
    name: str,
    data_dir: str | Path | None = None,
    *,
    gpqa_seed: int = EvalConfig.gpqa_seed,
    synthetic_n: int = SyntheticConfig.n,
    synthetic_seed: int = SyntheticConfig.seed,
    revision: str | None = None,
) -> list[BenchItem]:
    """Load a benchmark by name (hub id by default, at ``revision`` when given; ``data_dir``: local files)."""
    _check(name)
    if name in ("synthetic", "arithmetic"):
        from limo_exp.data.synthetic import make_eval_set

        family = "multistep" if name == "synthetic" else name
        return [
            _math_item(name, d["id"], d["problem"], d["answer"])
            for d in make_eval_set(synthetic_n, synthetic_seed, family)
        ]
    items: list[BenchItem] = []
    for part, rows in _rows(name, data_dir, revision):
        for i, row in enumerate(rows):
            if name == "olympiadbench":
                items.append(_olympiad_item(row))
            elif name == "gpqa_diamond":
                items.append(_gpqa_item(i, row, gpqa_seed))
            elif name == "math500":
                items.append(
                    _math_item(
                        name,
                        _get(row, "unique_id", default=i),
                        row["problem"],
                        row["answer"],
                        subject=row.get("subject"),
                        level=row.get("level"),
                    )
                )
            else:  # aime24, aime25, amc23: field names differ between the hub and the local files
                half = {"AIME2025-I": "I", "AIME2025-II": "II"}.get(part or "")
                rid = _get(row, "id", "ID", default=f"{half}-{i + 1}" if half else i)
                problem = _get(row, "problem", "Problem", "question")
                items.append(_math_item(name, rid, problem, _get(row, "answer", "Answer")))
    return items
