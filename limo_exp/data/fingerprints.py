"""Content fingerprints: what run keys and the curation cache are computed on.

A pool's fingerprint hashes its records in order (dedup keeps the first of a duplicate group);
a benchmark's digest hashes its normalised items, so it is the same for a hub and a local copy
of the same items.
"""

from __future__ import annotations

import hashlib
import json

from limo_exp.data.records import BenchItem, Record


def record_json(r: Record) -> str:
    """Canonical JSON of a record (sorted keys)."""
    d = {
        "id": r.id,
        "problem": r.problem,
        "answer": r.answer,
        "solutions": [
            {"text": s.text, "kind": s.kind, "source": s.source, "quality": s.quality, "tier": s.tier}
            for s in r.solutions
        ],
        "meta": r.meta,
    }
    return json.dumps(d, sort_keys=True, ensure_ascii=False)


def pool_fingerprint(records: list[Record]) -> str:
    """Content hash of a pool, order included."""
    h = hashlib.sha256()
    for r in records:
        h.update(record_json(r).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def items_digest(items: list[BenchItem]) -> str:
    """sha256 of the normalised benchmark items (works for hub and local sources alike)."""
    blob = json.dumps([[i.id, i.problem, i.answers, i.choices] for i in items], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
