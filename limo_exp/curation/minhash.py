r"""Vectorised word shingles, n-gram hashes, MinHash signatures and LSH banding (numpy only).

Texts are tokenised into lower-case words: runs of letters/digits plus the operators ``+-*/=<>^|!``
(``words``). Unlike the whitespace split of the s1 / open-r1 scripts this ignores LaTeX markup
(``$``, braces, ``\[``), so "$x^{10}+(13x-1)^{10}=0$" and "\[x^{10}+(13x-1)^{10}=0\,\]" match. Each distinct word gets a stable 64-bit hash (blake2b), so
signatures are identical across processes and runs. A k-shingle hash mixes k word hashes with
wrapping uint64 arithmetic; a text shorter than k words gives one shingle of all its words.
MinHash uses the multiply-shift family h(x) = (a*x + b) >> 32 with fixed odd ``a``.

Curation asks two questions (``pairs_within``: near-duplicates in a pool, ``pairs_across``: pool
texts near a benchmark item). datasketch's MinHash + MinHashLSH answer the same two in
bench/minhash_datasketch.py: same pinned cases found and about the same recall against exact Jaccard,
but several times slower (per-text Python objects), so this vectorised engine stays
(bench_curation.py --compare, results/bench/curation_compare.json, docs/curation.md).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from limo_exp.data.records import normalize_text

_MIX = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)
_SIG_SEED = 0x11A0E  # permutations are fixed: signatures are comparable across calls
_CHUNK = 1 << 16  # shingles per MinHash block (x num_perm x 8 bytes of scratch)
_WORD = re.compile(r"[^\W_]+|[+\-*/=<>^|!]")


# LaTeX spellings of the same thing; sizing commands carry no content
_SYNONYMS = {
    "dfrac": "frac",
    "tfrac": "frac",
    "leq": "le",
    "leqslant": "le",
    "geq": "ge",
    "geqslant": "ge",
    "neq": "ne",
    "ldots": "dots",
    "cdots": "dots",
    "dotsm": "dots",
    "dotsb": "dots",
    "left": "",
    "right": "",
    "displaystyle": "",
    "mathrm": "",
    "text": "",
    "textbf": "",
}


def words(text: str) -> list[str]:
    return [w for w in (_SYNONYMS.get(t, t) for t in _WORD.findall(normalize_text(text))) if w]


@dataclass
class Tokens:
    """All texts' word hashes in one flat array; text i is ``hashes[starts[i]:starts[i] + lengths[i]]``."""

    hashes: np.ndarray  # uint64
    lengths: np.ndarray  # int64

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)


class _Vocab(dict):
    """word -> stable 64-bit hash (blake2b), computed once per distinct word; 0 marks a dropped word."""

    def __missing__(self, w: str) -> int:
        w2 = _SYNONYMS.get(w, w)
        h = int.from_bytes(hashlib.blake2b(w2.encode(), digest_size=8).digest(), "little") | 1 if w2 else 0
        self[w] = h
        return h


def tokenize(texts: list[str]) -> Tokens:
    find, nfkc = _WORD.findall, unicodedata.normalize
    toks: list[str] = []
    lengths = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        w = find(nfkc("NFKC", t).lower())
        lengths[i] = len(w)
        toks.extend(w)
    h = np.fromiter(map(_Vocab().__getitem__, toks), dtype=np.uint64, count=len(toks))
    keep = h != 0
    if not keep.all():
        owner = np.repeat(np.arange(len(texts)), lengths)
        lengths = np.bincount(owner[keep], minlength=len(texts)).astype(np.int64)
        h = h[keep]
    return Tokens(h, lengths)


def subset(tok: Tokens, rows: np.ndarray) -> Tokens:
    """The tokens of texts ``rows`` (in that order)."""
    starts, lens = tok.starts[rows], tok.lengths[rows]
    idx = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
    return Tokens(tok.hashes[idx], lens.copy())


def shingles(tok: Tokens, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, owner): the k-word shingle hashes of every text and the text index each belongs to.

    Positions p with p + k <= length give one shingle; a non-empty text shorter than k gives one
    shingle of all its words; an empty text gives none.
    """
    n_tok = len(tok.hashes)
    owner_tok = np.repeat(np.arange(len(tok.lengths)), tok.lengths)
    pos = np.arange(n_tok, dtype=np.int64) - np.repeat(tok.starts, tok.lengths)
    length = tok.lengths[owner_tok]
    keep = (pos + k <= length) | ((pos == 0) & (length < k))
    idx = np.nonzero(keep)[0]
    h = np.zeros(len(idx), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for m in range(k):
            j = idx + m
            inside = pos[idx] + m < length[idx]
            w = np.where(inside, tok.hashes[np.minimum(j, max(n_tok - 1, 0))], np.uint64(0))
            h = (h ^ w) * _MIX
            h ^= h >> np.uint64(31)
        h = h * _MIX2
        h ^= h >> np.uint64(29)
    return h, owner_tok[idx]


def _perms(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SIG_SEED)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def signatures(sh: np.ndarray, owner: np.ndarray, n_docs: int, num_perm: int) -> np.ndarray:
    """(n_docs, num_perm) uint32 MinHash signatures; texts without shingles get all 0xFFFFFFFF."""
    a, b = _perms(num_perm)
    sig = np.full((n_docs, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    if len(sh) == 0:
        return sig
    order = np.argsort(owner, kind="stable")
    sh, owner = sh[order], owner[order]
    with np.errstate(over="ignore"):
        for s in range(0, len(sh), _CHUNK):
            blk, own = sh[s : s + _CHUNK], owner[s : s + _CHUNK]
            hv = ((a[:, None] * blk[None, :] + b[:, None]) >> np.uint64(32)).astype(
                np.uint32
            )  # (perm, shingle)
            bounds = np.concatenate([[0], np.nonzero(own[1:] != own[:-1])[0] + 1])
            mins = np.minimum.reduceat(hv, bounds, axis=1).T
            docs = own[bounds]
            sig[docs] = np.minimum(sig[docs], mins)  # a text may straddle two blocks
    return sig


def band_keys(sig: np.ndarray, bands: int) -> np.ndarray:
    """(n_docs, bands) uint64 bucket keys: each band's rows mixed into one hash."""
    n, p = sig.shape
    if p % bands:
        raise ValueError(f"num_perm={p} is not a multiple of bands={bands}")
    rows = p // bands
    s = sig.astype(np.uint64).reshape(n, bands, rows)
    key = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(rows):
            key = (key ^ s[:, :, r]) * _MIX
            key ^= key >> np.uint64(29)
    return key + np.arange(bands, dtype=np.uint64)[None, :] * _MIX2  # keep bands apart


def estimate_jaccard(
    sig: np.ndarray, i: np.ndarray, j: np.ndarray, other: np.ndarray | None = None
) -> np.ndarray:
    """Fraction of agreeing signature rows for pairs (i, j); j indexes ``other`` when given."""
    other = sig if other is None else other
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), 8192):
        out[s : s + 8192] = (sig[i[s : s + 8192]] == other[j[s : s + 8192]]).mean(axis=1)
    return out


def candidate_pairs(sig: np.ndarray, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (head, member), head < member, that share an LSH bucket in some band.

    Each bucket links every member to its first (lowest-index) member: O(n * bands) pairs.
    Texts without shingles never pair.
    """
    n = sig.shape[0]
    empty = (sig == np.iinfo(np.uint32).max).all(axis=1)
    keys = band_keys(sig, bands)
    heads, members = [], []
    idx = np.nonzero(~empty)[0]
    for b in range(bands):
        k = keys[idx, b]
        order = np.argsort(k, kind="stable")
        ks, ids = k[order], idx[order]
        new = np.ones(len(ks), dtype=bool)
        new[1:] = ks[1:] != ks[:-1]
        head = ids[np.maximum.accumulate(np.where(new, np.arange(len(ks)), 0))]
        dup = ~new
        heads.append(head[dup])
        members.append(ids[dup])
    if not heads:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    h, m = np.concatenate(heads), np.concatenate(members)
    code = np.unique(h.astype(np.int64) * n + m)
    return code // n, code % n


def cross_pairs(sig_a: np.ndarray, sig_b: np.ndarray, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i in a, j in b) sharing an LSH bucket in some band (b is the small side: benchmarks)."""
    ka, kb = band_keys(sig_a, bands), band_keys(sig_b, bands)
    ea = (sig_a == np.iinfo(np.uint32).max).all(axis=1)
    eb = (sig_b == np.iinfo(np.uint32).max).all(axis=1)
    ii, jj = [], []
    for b in range(bands):
        order = np.argsort(kb[:, b], kind="stable")
        sk = kb[order, b]
        lo = np.searchsorted(sk, ka[:, b], side="left")
        hi = np.searchsorted(sk, ka[:, b], side="right")
        for i in np.nonzero((hi > lo) & ~ea)[0]:
            for j in order[lo[i] : hi[i]]:
                if not eb[j]:
                    ii.append(i)
                    jj.append(j)
    if not ii:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    nb = len(sig_b)
    code = np.unique(np.array(ii, dtype=np.int64) * nb + np.array(jj, dtype=np.int64))
    return code // nb, code % nb


# ---------------------------------------------------------------- the two questions curation asks
def pairs_within(
    tok: Tokens, *, shingle: int, num_perm: int, bands: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, estimated Jaccard), i < j: the pairs of texts of ``tok`` at or above ``threshold``."""
    sh, owner = shingles(tok, shingle)
    sig = signatures(sh, owner, len(tok.lengths), num_perm)
    i, j = candidate_pairs(sig, bands)
    sim = estimate_jaccard(sig, i, j)
    keep = sim >= threshold
    return i[keep], j[keep], sim[keep]


def pairs_across(
    tok_a: Tokens, tok_b: Tokens, *, shingle: int, num_perm: int, bands: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i in a, j in b, estimated Jaccard) at or above ``threshold``; b is the small side (benchmarks)."""
    sig_a = signatures(*shingles(tok_a, shingle), len(tok_a.lengths), num_perm)
    sig_b = signatures(*shingles(tok_b, shingle), len(tok_b.lengths), num_perm)
    i, j = cross_pairs(sig_a, sig_b, bands)
    sim = estimate_jaccard(sig_a, i, j, other=sig_b)
    keep = sim >= threshold
    return i[keep], j[keep], sim[keep]
