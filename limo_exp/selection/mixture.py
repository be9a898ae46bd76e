"""N drawn from a mixture of sources (``pool=mix``), nested: the members' shares of the N.

Each member's records keep the strategy's order; the members are interleaved by weight, one
record a step: step t (1, 2, ...) takes the next record of the member furthest below its share,
the member whose ``w * t - taken`` is largest (ties: the first listed). The order does not depend
on N, so the N=100 draw is inside the N=200 draw, and at any N each member has its share within
one record; counts (``count``: weights that add up to N) come out exact. A member that runs out
before its share of N fails the selection: it never silently changes the mixture.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from limo_exp.data.mix import MEMBER, check_members
from limo_exp.data.records import Example, Record
from limo_exp.typed import ConfigError


class MemberExhausted(ValueError):
    """A member has fewer records than its share of N (select raises NotEnoughRecords)."""


def shares(members: dict[str, Any], n: int) -> dict[str, float]:
    """Member -> weight (those above 0, in order); counts must add up to N."""
    kept = check_members(members)
    counts = {label: m["count"] for label, m in kept.items() if m.get("count") is not None}
    if counts and sum(counts.values()) != n:
        raise ConfigError(
            f"pool.members counts add up to {sum(counts.values())} ({counts}), data.n_samples={n}: "
            "set N to their sum, or give weights"
        )
    return {label: float(m.get("count") or m.get("weight")) for label, m in kept.items()}


def interleave(ranked: list, weights: dict[str, float], n: int) -> list:
    """The first ``n`` of the weighted interleaving of ``ranked`` (candidates (record, solution),
    grouped by their member)."""
    total = sum(weights.values())
    queues: dict[str, list] = {label: [] for label in weights}
    for c in ranked:
        label = c[0].meta.get(MEMBER)
        if label in queues:
            queues[label].append(c)
    taken = dict.fromkeys(weights, 0)
    out = []
    for t in range(1, n + 1):
        label = max(weights, key=lambda m: weights[m] / total * t - taken[m])  # max keeps the first
        if taken[label] >= len(queues[label]):
            raise MemberExhausted(
                f"pool.members.{label}: its share of N={n} needs more than the {len(queues[label])} "
                f"records of it that the strategy can choose after curation"
            )
        out.append(queues[label][taken[label]])
        taken[label] += 1
    return out


def share_figures(examples: list[Example], records: list[Record], members: list[str]) -> dict[str, float]:
    """``train/share/<member>``: each member's share of the questions trained on;
    ``curation/member/<member>``: its records in the curated pool (after dedup across members)."""
    member_of = {r.id: r.meta.get(MEMBER) for r in records}
    questions = Counter(member_of.get(i) for i in dict.fromkeys(e.id for e in examples))
    pooled = Counter(r.meta.get(MEMBER) for r in records)
    n = sum(questions.values()) or 1
    figures = {f"train/share/{m}": questions[m] / n for m in members}
    return figures | {f"curation/member/{m}": float(pooled[m]) for m in members}
