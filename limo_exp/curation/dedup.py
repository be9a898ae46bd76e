"""Exact and near-duplicate removal over problem texts. The first record of a duplicate group is kept."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

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
    if n == 0:
        return np.empty(0, dtype=np.int64)
    i, j, _ = minhash.pairs_within(
        minhash.tokenize(problems), shingle=shingle, num_perm=num_perm, bands=bands, threshold=threshold
    )
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    first = np.full(label.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, label, np.arange(n))  # the lowest index (earliest record) of each group
    return first[label]
