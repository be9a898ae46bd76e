"""Curation settings (the ``curation`` config group) and the curated result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from limo_exp.records import Record


@dataclass(frozen=True)
class VerifyConfig:
    enabled: bool = True  # keep a solution only if its final answer matches the gold answer
    workers: int = 1  # processes for grading (math-verify is the slow stage)


@dataclass(frozen=True)
class DedupConfig:
    exact: bool = True  # same problem after normalize_text
    near: bool = True  # MinHash LSH on word shingles
    threshold: float = 0.8  # estimated Jaccard at or above which two problems are duplicates
    num_perm: int = 128
    bands: int = 16  # num_perm / bands rows per band; LSH threshold ~ (1/bands)^(1/rows)
    shingle: int = 5  # words per shingle: 5 keeps one-number variants of a short problem apart


@dataclass(frozen=True)
class DecontamConfig:
    enabled: bool = True
    ngram: int = 8  # word n-gram size (open-r1: 8, s1: 13); 0 turns the n-gram check off
    min_overlap: float = 0.6  # shared n-grams / n-grams of the shorter text; 0 = any shared n-gram
    max_pool_df: int = 10  # n-grams in more pool problems than this are boilerplate; 0 = no filter
    near: bool = True  # MinHash near-match as well
    threshold: float = 0.8  # estimated Jaccard for a near match
    num_perm: int = 128
    bands: int = 32
    shingle: int = 5
    drop: bool = True  # false: report the flagged records but keep them


@dataclass(frozen=True)
class DifficultyConfig:
    enabled: bool = False
    field: str = "level"  # numeric meta field (MATH level 1-5, AIME difficulty) when pass_rates is null
    pass_rates: str | None = None  # JSON {id: pass rate} or JSONL {"id", "pass_rate"} of a reference model
    min: float | None = None  # keep min <= value <= max (either bound may be null)
    max: float | None = None


@dataclass(frozen=True)
class QualityConfig:
    enabled: bool = True  # score every solution and assign tiers L1..L<levels> by quantile
    levels: int = 5


@dataclass(frozen=True)
class CurationConfig:
    name: str = "default"
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> CurationConfig:
        """Strict: an unknown key (a typo in a config) is an error, listing the valid keys."""
        d = dict(d or {})
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d.pop(f.name)
            kw[f.name] = _section(f.name, f.default_factory(), v) if f.name != "name" else str(v)  # type: ignore[misc]
        if d:
            raise ValueError(
                f"curation config: unknown keys {sorted(d)}; valid: {[f.name for f in fields(cls)]}"
            )
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _section(name: str, default: Any, value: Mapping[str, Any] | None) -> Any:
    value = dict(value or {})
    valid = {f.name for f in fields(default)}
    unknown = sorted(set(value) - valid)
    if unknown:
        raise ValueError(f"curation.{name}: unknown keys {unknown}; valid: {sorted(valid)}")
    return type(default)(**value)


@dataclass
class CuratedPool:
    records: list[Record]
    funnel: list[dict[str, Any]]  # [{"stage", "in", "out", ...}] in stage order
    contamination: list[dict[str, Any]]  # one row per flagged (pool record, benchmark item)
    fingerprint: str  # content hash of the curated records
    from_cache: bool = False  # set by curate_cached; not part of the content
