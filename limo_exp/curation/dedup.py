"""Exact and near-duplicate removal over problem texts. The first record of a duplicate group is kept."""

from __future__ import annotations

import numpy as np

from limo_exp.curation import minhash
from limo_exp.data.records import normalize_text


def exact_duplicates(problems: list[str]) -> list[int]:
    """Indices to keep: the first of each group of problems equal after ``normalize_text``."""
    seen: set[str] = set()
    keep = []
    for i, p in enumerate(problems):
        key = normalize_text(p)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def near_duplicate_groups(
    problems: list[str], *, threshold: float, num_perm: int, bands: int, shingle: int
) -> np.ndarray:
    """root[i] = index of the first text of i's near-duplicate group (root[i] == i: i is kept).

    Candidates come from MinHash LSH on word shingles; a candidate pair is a duplicate when the
    estimated Jaccard similarity of its shingle sets is >= threshold. Groups are the connected
    components of the duplicate pairs.
    """
    n = len(problems)
    tok = minhash.tokenize(problems)
    sh, owner = minhash.shingles(tok, shingle)
    sig = minhash.signatures(sh, owner, n, num_perm)
    i, j = minhash.candidate_pairs(sig, bands)
    sim = minhash.estimate_jaccard(sig, i, j)
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(i[sim >= threshold].tolist(), j[sim >= threshold].tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the lower index (earlier record) stays the root
    return np.array([find(x) for x in range(n)], dtype=np.int64)
