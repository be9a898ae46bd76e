"""bench_curation.py --compare: curation with limo_exp's numpy MinHash LSH vs datasketch's, side by side
in one process (warm-up, then interleaved), and each engine's recall against exact Jaccard."""

from __future__ import annotations

import contextlib
import gc
import json
import statistics
import time
from pathlib import Path

import minhash_datasketch
import numpy as np
from scipy.sparse import csr_matrix

from limo_exp.curation import curate, minhash

REPO = Path(__file__).resolve().parents[1]
ENGINES = {"numpy": contextlib.nullcontext, "datasketch": minhash_datasketch.use}


def timed(engine: str, records, cfg, bench) -> tuple[float, list]:
    gc.collect()
    with ENGINES[engine]():
        t0 = time.perf_counter()
        out = curate(records, cfg, bench)
        return time.perf_counter() - t0, out.funnel


def _incidence(tok: minhash.Tokens, k: int) -> csr_matrix:
    """texts x distinct k-shingles, 1 where a text holds a shingle."""
    sh, owner = minhash.shingles(tok, k)
    code, col = np.unique(np.stack([owner.astype(np.uint64), sh], axis=1), axis=0), None
    _, col = np.unique(code[:, 1], return_inverse=True)
    data = np.ones(len(code), dtype=np.float32)
    return csr_matrix((data, (code[:, 0].astype(np.int64), col)), shape=(len(tok.lengths), col.max() + 1))


def exact_pairs(tok_a, tok_b, k: int, threshold: float, within: bool) -> dict[tuple[int, int], float]:
    """Pairs (i, j) -> exact k-shingle Jaccard, where it is >= threshold (i < j when ``within``)."""
    both = minhash.Tokens(
        np.concatenate([tok_a.hashes, tok_b.hashes]), np.concatenate([tok_a.lengths, tok_b.lengths])
    )
    x = _incidence(both, k)
    a, b = x[: len(tok_a.lengths)], x[len(tok_a.lengths) :]
    size_a, size_b = np.asarray(a.sum(1)).ravel(), np.asarray(b.sum(1)).ravel()
    out = {}
    for s in range(0, a.shape[0], 1000):
        inter = (a[s : s + 1000] @ b.T).tocoo()
        i, j = inter.row + s, inter.col
        jac = inter.data / (size_a[i] + size_b[j] - inter.data)
        keep = (jac >= threshold) & ((i < j) if within else True)
        out |= dict(zip(zip(i[keep].tolist(), j[keep].tolist()), jac[keep].tolist()))
    return out


def dropped(pairs, n: int) -> set[int]:
    """The records dedup drops for these duplicate pairs: all but the first of each connected group."""
    from limo_exp.curation.dedup import connected_components, coo_matrix

    i, j = (np.array(x, dtype=np.int64) for x in zip(*pairs)) if pairs else (np.empty(0, np.int64),) * 2
    _, label = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    first = np.full(label.max() + 1, n)
    np.minimum.at(first, label, np.arange(n))
    return set(np.nonzero(first[label] != np.arange(n))[0].tolist())


def recall(bench) -> dict:
    """Each engine against exact 5-shingle Jaccard on real data: the records dedup drops from MATH
    train (128 permutations x 16 bands; a group is one connected set of pairs), and the pairs
    decontamination flags between MATH train + AIME and the benchmarks (x 32 bands); ``_at_0.9``:
    only what is at Jaccard >= 0.9, well above the 0.8 threshold."""
    from limo_exp.data.pools import load_pool

    pools = REPO.parent / "shared" / "data" / "pools"
    if not any(pools.glob("math_train*")):
        return {"skipped": f"no pools at {pools}"}
    math = [r.problem for r in load_pool("math_train", data_dir=str(pools))]
    aime = [r.problem for r in load_pool("aime_historical", data_dir=str(pools))]
    items = [it.problem for task in sorted(bench) for it in bench[task]]
    cases = {
        "dedup: MATH train within": (math, None, 16),
        "decontam: MATH train + AIME vs benchmarks": (math + aime, items, 32),
    }
    out = {}
    for name, (a, b, bands) in cases.items():
        tok_a = minhash.tokenize(a)
        tok_b = tok_a if b is None else minhash.tokenize(b)
        truth = exact_pairs(tok_a, tok_b, 5, 0.8, within=b is None)
        all_pairs, clear_pairs = set(truth), {p for p, jac in truth.items() if jac >= 0.9}
        truth, clear = all_pairs, clear_pairs
        what = "records_dropped" if b is None else "pairs"
        row = {"unit": what, "exact": len(dropped(truth, len(a)) if b is None else truth)}
        for engine, ctx in ENGINES.items():
            with ctx():
                kw = {"shingle": 5, "num_perm": 128, "bands": bands, "threshold": 0.8}
                i, j, _ = (
                    minhash.pairs_within(tok_a, **kw)
                    if b is None
                    else minhash.pairs_across(tok_a, tok_b, **kw)
                )
            found = set(zip(i.tolist(), j.tolist()))
            if b is None:  # dedup's answer is the records it drops
                found, truth, clear = (dropped(x, len(a)) for x in (found, all_pairs, clear_pairs))
            hit = len(found & truth)
            row[engine] = {
                "found": len(found),
                "recall": round(hit / max(len(truth), 1), 4),
                "recall_at_0.9": round(len(found & clear) / max(len(clear), 1), 4),
                "precision": round(hit / max(len(found), 1), 4),
            }
        out[name] = row
        print(f"{name}: {row}")
    return out


def compare(sizes, reps, cfg, bench, make_records, machine, out_path) -> None:
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(out.read_text())["results"] if out.exists() else []  # one size per invocation at 1M
    report = {"config": cfg.to_dict(), "machine": machine, "reps": reps, "recall": recall(bench)}
    rows = [r for r in earlier if r["records"] not in sizes and not r.get("partial")]

    def save(*extra):
        results = sorted([*rows, *extra], key=lambda r: r["records"])
        out.write_text(json.dumps(report | {"results": results}, indent=2) + "\n")

    warm = make_records(2000)
    for engine in ENGINES:  # imports, numpy and datasketch's first-call costs
        timed(engine, warm, cfg, bench)
    for n in sizes:
        records = make_records(n)
        runs: dict[str, list[float]] = {e: [] for e in ENGINES}
        funnels = {}
        for rep in range(reps):
            order = list(ENGINES) if rep % 2 == 0 else list(ENGINES)[::-1]  # ABBA: drift hits both
            for engine in order:
                secs, funnels[engine] = timed(engine, records, cfg, bench)
                runs[engine].append(round(secs, 2))
                save({"records": n, "seconds": runs, "partial": True})  # a killed run leaves its times
                print(f"{n:>9,} {engine:>10}: {secs:7.1f} s  {n / secs:8,.0f} records/s", flush=True)
        row = {"records": n, "seconds": runs}
        for e in ENGINES:
            med = statistics.median(runs[e])
            row[e] = {"median_seconds": med, "records_per_s": round(n / med), "funnel": funnels[e]}
        rows.append(row)
        save()
        del records
    print(f"\n{'records':>10} " + " ".join(f"{e + ' rec/s':>17}" for e in ENGINES))
    for r in sorted(rows, key=lambda r: r["records"]):
        print(f"{r['records']:>10,} " + " ".join(f"{r[e]['records_per_s']:>17,}" for e in ENGINES))
    print(f"wrote {out}")
