"""The curation stages, in order: verify -> dedup (exact, near) -> decontaminate -> difficulty -> quality.

Each stage is a function ``records -> records`` counted in the funnel; ``curate`` composes them.
Records are never mutated: a stage that changes a record returns a copy.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

from limo_exp.config import CurationConfig, DecontamConfig, DifficultyConfig
from limo_exp.curation import chain_score as q
from limo_exp.curation.decontam import find_contamination
from limo_exp.curation.dedup import exact_duplicates, near_duplicate_groups
from limo_exp.curation.outputs import CuratedPool
from limo_exp.data import progress
from limo_exp.data.fingerprints import pool_fingerprint
from limo_exp.data.pools import DROPPED
from limo_exp.data.records import BenchItem, Record, Solution


def _grade_all(pairs: list[tuple[str, str]]) -> list[bool]:
    from limo_exp.evaluation.grading import grade_math

    return [bool(grade_math(text, gold)) for text, gold in pairs]


def verify_answers(
    records: list[Record], workers: int = 1, mode: str = "kept"
) -> tuple[list[Record], dict[str, int]]:
    """Keep solutions whose final answer (last \\boxed{}) matches the record's gold answer
    (``mode="inverted"``: those whose answer is wrong, the structure-vs-content control); drop
    records left with none (a record without a gold answer cannot be verified and is dropped)."""
    pairs = [(s.text, r.answer) for r in records if r.answer for s in r.solutions]
    chunks = [pairs[i : i + 200] for i in range(0, len(pairs), 200)]
    ok: list[bool] = []
    with progress.bar("verify", total=len(pairs), unit="solution") as shown, ExitStack() as stack:
        if workers > 1 and len(pairs) > 200:
            from concurrent.futures import ProcessPoolExecutor

            parts = stack.enter_context(ProcessPoolExecutor(workers)).map(_grade_all, chunks)
        else:
            parts = map(_grade_all, chunks)
        for part in parts:
            ok += part
            shown.update(len(part))
    out, k = [], 0
    for r in records:
        if not r.answer:
            continue
        want = mode != "inverted"
        kept = [s for s, good in zip(r.solutions, ok[k : k + len(r.solutions)], strict=True) if good == want]
        k += len(r.solutions)
        if kept:
            out.append(r if len(kept) == len(r.solutions) else replace(r, solutions=kept))
    n_sol = sum(len(r.solutions) for r in records)
    return out, {"solutions_in": n_sol, "solutions_out": sum(len(r.solutions) for r in out)}


def decontaminate(records: list[Record], benchmarks: dict[str, list[BenchItem]], c: DecontamConfig):
    rows = find_contamination(
        [r.problem for r in records],
        [r.id for r in records],
        benchmarks,
        ngram=c.ngram,
        min_overlap=c.min_overlap,
        max_pool_df=c.max_pool_df,
        near=c.near,
        threshold=c.threshold,
        num_perm=c.num_perm,
        bands=c.bands,
        shingle=c.shingle,
    )
    flagged = {row["pool_index"] for row in rows}
    kept = [r for i, r in enumerate(records) if i not in flagged] if c.drop else records
    for row in rows:
        del row["pool_index"]
    return kept, rows


def load_pass_rates(path: str) -> dict[str, float]:
    """``{id: rate}`` from a JSON object, or JSON Lines rows ``{"id": ..., "pass_rate": ...}``."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("{") and "\n{" not in text.strip():
        return {str(k): float(v) for k, v in json.loads(text).items()}
    rates = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
                rates[str(row["id"])] = float(row["pass_rate"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f'{path}:{lineno}: expected {{"id", "pass_rate"}}: {e}') from None
    return rates


def difficulty_band(records: list[Record], c: DifficultyConfig) -> list[Record]:
    """Keep records whose difficulty value lies in [min, max]; records without a value are dropped.

    The value is the reference model's pass rate (``pass_rates``) when given, else ``meta[field]``.
    """
    rates = load_pass_rates(c.pass_rates) if c.pass_rates else None
    out = []
    for r in records:
        v = rates.get(r.id) if rates is not None else r.meta.get(c.field)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if (c.min is None or v >= c.min) and (c.max is None or v <= c.max):
            out.append(r)
    return out


def score_quality(records: list[Record], levels: int) -> list[Record]:
    """Copies of the records with every solution's ``quality`` score and quantile ``tier`` set."""
    scores = [q.chain_score(s.text) for r in records for s in r.solutions]
    tiers = iter(q.quantile_tiers(scores, levels))
    it = iter(scores)
    return [
        Record(
            r.id,
            r.problem,
            r.answer,
            [Solution(s.text, s.kind, s.source, next(it), next(tiers)) for s in r.solutions],
            r.meta,
        )
        for r in records
    ]


def curate(records: list[Record], cfg: CurationConfig, benchmarks: dict[str, list[BenchItem]]) -> CuratedPool:
    """Run the enabled stages in order; the funnel counts records into and out of each."""
    funnel: list[dict[str, Any]] = [{"stage": "load", "in": len(records), "out": len(records)}]
    if any(DROPPED in r.meta for r in records):  # a keep_if filter of the pool (OpenR1's flags)
        funnel[0]["solutions_dropped"] = sum(r.meta.get(DROPPED, 0) for r in records)
    contamination: list[dict] = []
    marks = progress.StageMarks()  # on a terminal: each stage's records and records/s

    def step(stage: str, before: int, after: list[Record], **extra: Any) -> list[Record]:
        funnel.append({"stage": stage, "in": before, "out": len(after), **extra})
        marks.done(stage, before)
        return after

    if cfg.verify.effective != "dropped":
        kept, extra = verify_answers(records, cfg.verify.workers, cfg.verify.effective)
        stage = "verify" if cfg.verify.effective == "kept" else "verify_inverted"
        records = step(stage, len(records), kept, **extra)
    if cfg.dedup.exact:
        keep = exact_duplicates([r.problem for r in records])
        records = step("dedup_exact", len(records), [records[i] for i in keep])
    if cfg.dedup.near:
        d = cfg.dedup
        root = near_duplicate_groups(
            [r.problem for r in records],
            threshold=d.threshold,
            num_perm=d.num_perm,
            bands=d.bands,
            shingle=d.shingle,
        )
        records = step("dedup_near", len(records), [r for i, r in enumerate(records) if root[i] == i])
    if cfg.decontam.enabled:
        kept, contamination = decontaminate(records, benchmarks, cfg.decontam)
        flagged = len({row["pool_id"] for row in contamination})
        records = step(
            "decontam",
            len(records),
            kept,
            flagged=flagged,
            benchmarks=sorted(benchmarks),
            benchmark_items=sum(len(v) for v in benchmarks.values()),
        )
    if cfg.difficulty.enabled:
        records = step("difficulty", len(records), difficulty_band(records, cfg.difficulty))
    if cfg.quality.enabled:
        records = step("quality", len(records), score_quality(records, cfg.quality.levels))
    return CuratedPool(records, funnel, contamination, pool_fingerprint(records))
