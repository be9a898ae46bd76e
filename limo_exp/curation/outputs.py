"""The curated pool (curation's output) and its files: curated_pool.jsonl, funnel.json, contamination.jsonl."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limo_exp.data.records import Record

OUTPUT_FILES = ("curated_pool.jsonl", "funnel.json", "contamination.jsonl")


@dataclass
class CuratedPool:
    records: list[Record]
    funnel: list[dict[str, Any]]  # [{"stage", "in", "out", ...}] in stage order
    contamination: list[dict[str, Any]]  # one row per flagged (pool record, benchmark item)
    fingerprint: str  # content hash of the curated records
    from_cache: bool = False  # set by curate_cached; not part of the content
    cache_path: str | None = None  # where curate_cached keeps it (one file per content key)


def write_outputs(curated: CuratedPool, out_dir: str | Path, copy_pool: bool = True) -> list[Path]:
    """Write curated_pool.jsonl, funnel.json and contamination.jsonl; returns their paths. With
    ``copy_pool=False`` (a run: the cache holds the pool once) curated_pool.ref.json names the
    cached file (relative to ``out_dir``), its fingerprint and size instead of a copy of the records."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f for f in OUTPUT_FILES]
    if copy_pool or not curated.cache_path:
        with paths[0].open("w", encoding="utf-8") as f:
            for r in curated.records:
                f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    else:
        paths[0] = out / "curated_pool.ref.json"
        ref = {  # the cached file relative to this folder: no user's home in a logged artifact
            "cache": os.path.relpath(Path(curated.cache_path).resolve(), out.resolve()),
            "fingerprint": curated.fingerprint,
            "records": len(curated.records),
        }
        paths[0].write_text(json.dumps(ref, indent=2) + "\n")
    paths[1].write_text(
        json.dumps({"fingerprint": curated.fingerprint, "funnel": curated.funnel}, indent=2) + "\n"
    )
    with paths[2].open("w", encoding="utf-8") as f:
        for row in curated.contamination:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return paths


def format_funnel(funnel: list[dict[str, Any]]) -> str:
    """The funnel as an aligned text table: stage, in, out, dropped, notes."""
    head = f"{'stage':<12} {'in':>8} {'out':>8} {'dropped':>8}  notes"
    lines = [head, "-" * len(head)]
    for s in funnel:
        notes = ", ".join(
            f"{k}={v}" for k, v in s.items() if k not in ("stage", "in", "out") and k != "benchmarks"
        )
        lines.append(f"{s['stage']:<12} {s['in']:>8} {s['out']:>8} {s['in'] - s['out']:>8}  {notes}")
    return "\n".join(lines)
