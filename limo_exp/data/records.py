"""The record types every stage passes along: pool records, solutions, benchmark items.

A pool record's id is a stable hash of its normalised problem text, so the same
problem gets the same id whichever pool or file it came from.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

# Solution kinds, from least to most elaborate: the "kind" quality tiers.
KINDS = ("answer_only", "short", "long")


def normalize_text(text: str) -> str:
    """Lower-case, NFKC, collapse whitespace: the form ids and exact dedup are computed on."""
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"\s+", " ", text).strip()


def problem_id(problem: str) -> str:
    return hashlib.sha256(normalize_text(problem).encode()).hexdigest()[:16]


@dataclass
class Solution:
    text: str
    kind: str  # one of KINDS, or a pool-specific kind such as "human", "r1"
    source: str = ""
    quality: float | None = None  # rule-based chain score, filled in by curation
    tier: str | None = None  # "L1".."L5", filled in by curation


@dataclass
class Record:
    id: str
    problem: str
    answer: str
    solutions: list[Solution]
    meta: dict[str, Any] = field(default_factory=dict)  # source, difficulty, level, subject, year ...

    @classmethod
    def new(cls, problem: str, answer: str, solutions: list[Solution], **meta: Any) -> Record:
        return cls(
            id=problem_id(problem), problem=problem, answer=str(answer), solutions=solutions, meta=meta
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        sols = [Solution(**s) for s in d["solutions"]]
        return cls(
            id=d["id"],
            problem=d["problem"],
            answer=d["answer"],
            solutions=sols,
            meta=dict(d.get("meta") or {}),
        )


@dataclass
class Example:
    """One training example: a problem and the solution chosen for it by the quality tier."""

    id: str
    problem: str
    solution: str
    answer: str
    tier: str


@dataclass
class BenchItem:
    """One benchmark question, normalised across sources.

    ``canonical_id`` is the same for the same problem from the hub or a local file; ``answers`` holds every part of the gold answer (OlympiadBench multi-answer
    problems have several; all must be matched). ``choices`` is set for
    multiple-choice items (GPQA), already shuffled, with ``answer`` the gold letter.
    """

    task: str
    id: str  # the source's own id (hub and local files number items differently)
    problem: str
    answer: str
    answers: list[str] = field(default_factory=list)
    choices: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def canonical_id(self) -> str:
        """The item's identity whatever the source: a hash of its normalised problem text."""
        return problem_id(self.problem)
