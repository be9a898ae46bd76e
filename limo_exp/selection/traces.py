"""Trace length as an axis: a band of solution lengths (``quality.min_words`` / ``max_words``) and
the first fraction of each solution (``quality.truncate``), cut where the text allows.

Lengths are whitespace-separated words, as ``longest`` counts them: selection runs before any
model, so there is no tokenizer to count with; the tokens a truncation saves show in the run's
``cost/train_tokens`` (the model's own tokenizer) and, in words, in ``train/solution_words`` and
``train/words_cut``.

A cut at fraction f keeps the longest prefix, at most ``ceil(f * len(text))`` characters long, that
ends at a boundary of the text, the first kind found of: the end of a line (a step), the end of a
sentence (``.``, ``!``, ``?`` or ``:`` before whitespace), the end of a word. A text with no such
boundary before the cut keeps its first ``ceil(f * len)`` characters.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

from limo_exp.data.records import Example, Record

_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"[.!?:](?=\s)")
_WORD = re.compile(r"\S(?=\s)")


def words(text: str) -> int:
    return len(text.split())


def in_band(text: str, lo: int | None, hi: int | None) -> bool:
    n = words(text)
    return (lo is None or n >= lo) and (hi is None or n <= hi)


def length_band(records: list[Record], lo: int | None, hi: int | None) -> list[Record]:
    """The records with only their solutions of ``lo`` to ``hi`` words; records left with none
    dropped. Copies; the inputs are not changed."""
    if lo is None and hi is None:
        return records
    out = []
    for r in records:
        kept = [s for s in r.solutions if in_band(s.text, lo, hi)]
        if kept:
            out.append(r if len(kept) == len(r.solutions) else replace(r, solutions=kept))
    return out


def truncate(text: str, fraction: float) -> str:
    """The first ``fraction`` of ``text``, ending at a line end, else a sentence end, else a word end."""
    if fraction >= 1:
        return text
    limit = math.ceil(fraction * len(text))
    head = text[:limit]
    for pattern in (_LINE, _SENTENCE, _WORD):
        ends = [m.end() for m in pattern.finditer(text) if m.end() <= limit]
        ends = [e for e in ends if head[:e].strip()]
        if ends:
            return head[: ends[-1]].rstrip()
    return head


def truncate_examples(
    examples: list[Example], fraction: float | None
) -> tuple[list[Example], dict[str, float]]:
    """The examples with their solutions truncated, and the words trained on and cut."""
    before = sum(words(e.solution) for e in examples)
    if fraction is not None and fraction < 1:
        examples = [replace(e, solution=truncate(e.solution, fraction)) for e in examples]
    after = sum(words(e.solution) for e in examples)
    return examples, {"train/solution_words": float(after), "train/words_cut": float(before - after)}
