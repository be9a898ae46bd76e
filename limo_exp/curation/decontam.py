"""Decontamination: find pool problems that overlap a benchmark question.

Two checks, both on ``normalize_text(...).split()`` words:

- n-gram: the pool problem shares word n-grams with a benchmark question (s1 uses n=13, open-r1
  n=8 and flags one shared n-gram). Texts shorter than n words count as
  one n-gram of all their words. N-grams found in more than ``max_pool_df`` pool problems are
  boilerplate ("where $m$ and $n$ are relatively prime positive integers", Asymptote preambles) and
  never flag: on the real AIME and MATH pools they cause most raw 8-gram hits. Score (overlap) =
  shared n-grams / n-grams of the shorter of the two texts; a pair is flagged when overlap >=
  ``min_overlap`` (0 keeps the open-r1 rule: any shared n-gram).
- near: MinHash LSH on word shingles; a pair whose estimated Jaccard similarity is >= threshold.
  Catches rewordings and re-numberings the n-gram check misses. Score = estimated Jaccard.

Each flagged (pool record, benchmark item) pair is one row of the contamination report.
"""

from __future__ import annotations

import numpy as np

from limo_exp.curation import minhash
from limo_exp.data.records import BenchItem


def _ngram_pairs(pool_tok, eval_tok, n: int, max_pool_df: int):
    """(pool index, eval index, shared n-grams, overlap) for every pool/eval pair sharing a rare n-gram.

    overlap = shared / n-grams of the shorter text, so a benchmark question embedded in a longer pool
    problem (or the reverse, a question with an Asymptote figure the pool copy lacks) scores near 1.
    """
    ph, po = minhash.shingles(pool_tok, n)
    eh, eo = minhash.shingles(eval_tok, n)
    none = np.empty(0, np.int64)
    if not len(eh) or not len(ph):
        return none, none, none, np.empty(0)
    ecode = np.unique(np.stack([eh, eo.astype(np.uint64)], axis=1), axis=0)  # distinct (gram, item)
    eg, ei = ecode[:, 0], ecode[:, 1].astype(np.int64)
    n_eval = len(eval_tok.lengths)
    eval_count = np.bincount(ei, minlength=n_eval)
    pool_count = np.maximum(pool_tok.lengths - n + 1, 1)  # positions; repeats inside a problem are rare
    hit = np.isin(ph, eg)
    if not hit.any():
        return none, none, none, np.empty(0)
    pcode = np.unique(np.stack([ph[hit], po[hit].astype(np.uint64)], axis=1), axis=0)
    g, p = pcode[:, 0], pcode[:, 1].astype(np.int64)
    if max_pool_df:  # boilerplate ("where $m$ and $n$ are relatively prime") is in many pool problems
        _, inv, df = np.unique(g, return_inverse=True, return_counts=True)
        rare = df[inv] <= max_pool_df
        g, p = g[rare], p[rare]
    lo, hi = np.searchsorted(eg, g, "left"), np.searchsorted(eg, g, "right")
    cnt = hi - lo
    pool_rep = np.repeat(p, cnt)
    offs = np.repeat(lo - np.concatenate([[0], np.cumsum(cnt)[:-1]]), cnt) + np.arange(cnt.sum())
    pair, shared = np.unique(pool_rep * n_eval + ei[offs], return_counts=True)
    pi, ej = pair // n_eval, pair % n_eval
    overlap = shared / np.minimum(pool_count[pi], eval_count[ej])
    return pi, ej, shared, overlap


def find_contamination(
    problems: list[str],
    ids: list[str],
    benchmarks: dict[str, list[BenchItem]],
    *,
    ngram: int,
    min_overlap: float,
    max_pool_df: int,
    near: bool,
    threshold: float,
    num_perm: int,
    bands: int,
    shingle: int,
) -> list[dict]:
    """Report rows, one per flagged (pool problem, benchmark item) pair, in pool order.

    Row keys: pool_index, pool_id, pool_problem, eval_task, eval_id, eval_problem, method
    ("ngram", "near" or "ngram+near"), score, shared_ngrams.
    """
    items = [(task, it) for task in sorted(benchmarks) for it in benchmarks[task]]
    if not items or not problems:
        return []
    pool_tok = minhash.tokenize(problems)
    eval_tok = minhash.tokenize([it.problem for _, it in items])
    found: dict[tuple[int, int], dict] = {}
    if ngram:
        pi, ei, shared, overlap = _ngram_pairs(pool_tok, eval_tok, ngram, max_pool_df)
        keep = overlap >= min_overlap
        for a, b, s, o in zip(
            pi[keep].tolist(), ei[keep].tolist(), shared[keep].tolist(), overlap[keep].tolist(), strict=True
        ):
            found[(a, b)] = {"method": "ngram", "score": round(min(o, 1.0), 4), "shared_ngrams": s}
    if near:
        pi, ei, sim = minhash.pairs_across(
            pool_tok, eval_tok, shingle=shingle, num_perm=num_perm, bands=bands, threshold=threshold
        )
        for a, b, s in zip(pi.tolist(), ei.tolist(), sim.tolist(), strict=True):
            row = found.get((a, b))
            if row is None:
                found[(a, b)] = {"method": "near", "score": round(s, 4), "shared_ngrams": 0}
            else:
                row["method"] = "ngram+near"
                row["score"] = max(row["score"], round(s, 4))
    rows = []
    for (a, b), v in sorted(found.items()):
        task, it = items[b]
        rows.append(
            {
                "pool_index": a,
                "pool_id": ids[a],
                "pool_problem": problems[a],
                "eval_task": task,
                "eval_id": it.id,
                "eval_problem": it.problem,
                **v,
            }
        )
    return rows
