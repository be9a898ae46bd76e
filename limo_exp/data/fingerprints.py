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
    """sha256 of the benchmark's items by canonical identity (normalised problem text), gold answers
    and options, in canonical order: the same items from the hub or a local file, in any order and
    under any source ids, give the same digest; a changed problem or answer gives another."""
    rows = sorted([i.canonical_id, i.answers, i.choices] for i in items)
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def item_set_difference(a: list[BenchItem], b: list[BenchItem]) -> dict[str, list[str]]:
    """What differs between two copies of a benchmark (say hub and local), by canonical identity:
    the source ids of items only in ``a``, only in ``b``, and of items in both whose gold answers
    differ (as ``a``'s id)."""
    ka, kb = {i.canonical_id: i for i in a}, {i.canonical_id: i for i in b}
    return {
        "only_a": sorted(ka[k].id for k in ka.keys() - kb.keys()),
        "only_b": sorted(kb[k].id for k in kb.keys() - ka.keys()),
        "answer_differs": sorted(ka[k].id for k in ka.keys() & kb.keys() if ka[k].answers != kb[k].answers),
    }
