"""Curation cache: one file per (pool content, curation config, benchmark content).

Twenty runs of a sweep starting together must curate once: the first to take the key's file lock
(fcntl.flock) curates and writes the result atomically (temporary file + os.replace); the others
block on the lock, then read the file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path

from limo_exp.config import CurationConfig
from limo_exp.curation.outputs import CuratedPool
from limo_exp.curation.stages import curate
from limo_exp.data.fingerprints import pool_fingerprint
from limo_exp.data.records import BenchItem, Record

CACHE_VERSION = 1  # bump when a stage's behaviour changes, so stale caches are not read


def cache_key(records: list[Record], cfg: CurationConfig, benchmarks: dict[str, list[BenchItem]]) -> str:
    from limo_exp.evaluation.grading import GRADER_VERSION  # lazily: math-verify is slow to import
    from limo_exp.evaluation.registry import benchmarks_fingerprint

    extra = {}
    if cfg.difficulty.enabled and cfg.difficulty.pass_rates:
        extra["pass_rates"] = hashlib.sha256(Path(cfg.difficulty.pass_rates).read_bytes()).hexdigest()
    if cfg.verify.effective != "dropped":  # verdicts change with the grader
        extra["grader"] = GRADER_VERSION
    config = cfg.to_dict()
    if config["verify"]["mode"] == "kept":  # the default: caches written before the mode existed hold
        del config["verify"]["mode"]
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "pool": pool_fingerprint(records),
            "config": config,
            "benchmarks": benchmarks_fingerprint(benchmarks),
            **extra,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def save_curated(curated: CuratedPool, path: Path) -> None:
    """Write atomically: readers see the old file or the whole new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "fingerprint": curated.fingerprint,
        "funnel": curated.funnel,
        "contamination": curated.contamination,
        "records": [r.to_dict() for r in curated.records],
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_curated(path: Path) -> CuratedPool:
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    return CuratedPool(
        [Record.from_dict(r) for r in d["records"]],
        d["funnel"],
        d["contamination"],
        d["fingerprint"],
        from_cache=True,
    )


def curate_cached(
    records: list[Record], cfg: CurationConfig, benchmarks: dict[str, list[BenchItem]], cache_dir: str | Path
) -> CuratedPool:
    """``curate`` with a cache under ``cache_dir``; ``from_cache`` tells whether it was read back."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(records, cfg, benchmarks)
    path = cache_dir / f"curated-{key}.json"
    if path.exists():
        return _at(load_curated(path), path)
    with open(cache_dir / f"curated-{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.exists():  # another process curated while we waited
            return _at(load_curated(path), path)
        curated = curate(records, cfg, benchmarks)
        save_curated(curated, path)
        return _at(curated, path)


def _at(curated: CuratedPool, path: Path) -> CuratedPool:
    curated.cache_path = str(path.resolve())
    return curated
