"""The two questions curation asks of MinHash LSH, answered by datasketch (MinHash + MinHashLSH)
instead of limo_exp.curation.minhash's vectorised numpy: the same interface, for the side-by-side
in bench_curation.py --compare and the recall tests in tests/test_curation.py.

Both engines see the same texts: limo_exp's words and k-word shingle hashes (cut to 32 bits for
datasketch's ``affine32`` scheme); they differ in the MinHash family, the LSH index and the
Jaccard estimate. Texts without shingles never pair (as in the numpy engine).

    with use():          # limo_exp.curation.minhash.pairs_within / pairs_across are datasketch's
        curate(records, cfg, benchmarks)
"""

from __future__ import annotations

import contextlib

import numpy as np
from datasketch import MinHash, MinHashLSH

from limo_exp.curation import minhash

SEED = 1


def sketches(tok: minhash.Tokens, shingle: int, num_perm: int) -> list[MinHash | None]:
    """One datasketch MinHash per text (None: a text without shingles)."""
    sh, owner = minhash.shingles(tok, shingle)
    sh32 = (sh >> np.uint64(32)).astype(np.uint32)
    bounds = np.searchsorted(owner, np.arange(len(tok.lengths) + 1))
    proto = MinHash(num_perm=num_perm, seed=SEED, hashfunc=int, scheme="affine32")
    out: list[MinHash | None] = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if lo == hi:
            out.append(None)
            continue
        m = proto.copy()
        m.update_batch(sh32[lo:hi].tolist())
        out.append(m)
    return out


def _index(num_perm: int, bands: int, threshold: float) -> MinHashLSH:
    return MinHashLSH(threshold=threshold, num_perm=num_perm, params=(bands, num_perm // bands))


def _arrays(rows: list[tuple[int, int, float]]):
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    i, j, s = zip(*sorted(rows))
    return np.array(i, np.int64), np.array(j, np.int64), np.array(s)


def pairs_within(tok, *, shingle: int, num_perm: int, bands: int, threshold: float):
    """(i, j, estimated Jaccard), i < j: each text is queried against the earlier ones, then indexed."""
    lsh, sk, rows = _index(num_perm, bands, threshold), sketches(tok, shingle, num_perm), []
    for j, m in enumerate(sk):
        if m is None:
            continue
        for i in lsh.query(m):
            s = sk[i].jaccard(m)
            if s >= threshold:
                rows.append((i, j, s))
        lsh.insert(j, m, check_duplication=False)
    return _arrays(rows)


def pairs_across(tok_a, tok_b, *, shingle: int, num_perm: int, bands: int, threshold: float):
    """(i in a, j in b, estimated Jaccard): b (the benchmarks) is indexed, every text of a queried."""
    lsh, sk_b = _index(num_perm, bands, threshold), sketches(tok_b, shingle, num_perm)
    for j, m in enumerate(sk_b):
        if m is not None:
            lsh.insert(j, m, check_duplication=False)
    rows = []
    for i, m in enumerate(sketches(tok_a, shingle, num_perm)):
        if m is None:
            continue
        for j in lsh.query(m):
            s = m.jaccard(sk_b[j])
            if s >= threshold:
                rows.append((i, j, s))
    return _arrays(rows)


@contextlib.contextmanager
def use():
    """Curation's near-duplicate and near-match questions answered by datasketch inside the block."""
    saved = minhash.pairs_within, minhash.pairs_across
    minhash.pairs_within, minhash.pairs_across = pairs_within, pairs_across
    try:
        yield
    finally:
        minhash.pairs_within, minhash.pairs_across = saved
