"""Select N training examples of one quality tier: seeded, deterministic and nested.

Eligible records (those with a solution of the tier) are put in a total order by
sha256(f"{seed}:{id}"); the selection is the first N. With ``stratify_by`` each stratum (value of
``meta[stratify_by]``) is ordered the same way and the strata are interleaved round-robin (strata
in sorted order, an exhausted stratum skipped). Either way the order does not depend on N, so
the N=100 subset is contained in the N=200 subset, and it does not depend on the input order.

A tier is a solution kind ("answer_only", "short", "long", "human", ...), a quality level "L1".."L5",
a range "L2-L4", or "L4+" (L4 and above). When a record has several solutions of the tier, the
one with the highest quality score is used (ties: the first).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from itertools import zip_longest
from typing import Any

from limo_exp.data.records import Example, Record, Solution

_LEVEL = re.compile(r"^L(\d)(?:(\+)|-L?(\d))?$")


class NotEnoughRecords(ValueError):
    """Fewer eligible records than asked for."""


def tier_filter(tier: str) -> Callable[[Solution], bool]:
    """Predicate: does a solution belong to ``tier``?"""
    m = _LEVEL.match(tier)
    if not m:
        return lambda s: s.kind == tier
    lo = int(m.group(1))
    hi = 99 if m.group(2) else int(m.group(3) or lo)
    levels = {f"L{i}" for i in range(lo, hi + 1)}
    return lambda s: s.tier in levels


def _order_key(seed: int, rid: str) -> str:
    return hashlib.sha256(f"{seed}:{rid}".encode()).hexdigest()


def _best(sols: list[Solution]) -> Solution:
    return max(
        sols, key=lambda s: s.quality if s.quality is not None else float("-inf")
    )  # max keeps the first


def select(
    records: list[Record],
    n: int,
    tier: str,
    seed: int,
    stratify_by: str | None = None,
    funnel: list[dict[str, Any]] | None = None,
) -> list[Example]:
    """The first ``n`` eligible records of the seeded order, as training examples.

    Raises NotEnoughRecords when fewer than ``n`` records have a solution of ``tier``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    ok = tier_filter(tier)
    is_level = bool(_LEVEL.match(tier))
    if is_level and records and all(s.tier is None for r in records for s in r.solutions):
        raise ValueError(f"tier {tier!r} needs quality tiers: enable curation.quality")
    eligible: dict[str, tuple[Record, Solution]] = {}
    for r in records:
        sols = [s for s in r.solutions if ok(s)]
        if sols and r.id not in eligible:
            eligible[r.id] = (r, _best(sols))
    if len(eligible) < n:
        msg = (
            f"asked for {n} records of tier {tier!r}, only {len(eligible)} eligible of {len(records)} records"
        )
        if funnel:
            msg += "; curation funnel: " + ", ".join(f"{s['stage']} {s['in']}->{s['out']}" for s in funnel)
        if not eligible:  # most likely a tier the pool does not have: say which it has
            kinds = sorted({s.kind for r in records for s in r.solutions})
            levels = sorted({s.tier for r in records for s in r.solutions if s.tier})
            msg += f"; this pool's solution kinds: {kinds}" + (
                f", quality levels: {levels}" if levels else ""
            )
        raise NotEnoughRecords(msg)
    ids = sorted(eligible, key=lambda i: _order_key(seed, i))
    if stratify_by:
        strata: dict[str, list[str]] = {}
        for i in ids:
            strata.setdefault(str(eligible[i][0].meta.get(stratify_by)), []).append(i)
        ids = [
            i for group in zip_longest(*(strata[k] for k in sorted(strata))) for i in group if i is not None
        ]
    out = []
    for i in ids[:n]:
        r, s = eligible[i]
        out.append(
            Example(
                id=r.id,
                problem=r.problem,
                solution=s.text,
                answer=r.answer,
                tier=(s.tier or tier) if is_level else s.kind,
            )
        )
    return out
