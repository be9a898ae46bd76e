"""Select N training examples: the records of a quality tier, in the order of a strategy, first N.

Eligible records are those with a solution of the tier. A tier is a solution kind ("answer_only",
"short", "long", "human", ...) or a kind's prefix up to a colon ("teacher" takes every
"teacher:<model>:<mode>", "teacher:<model>" one teacher's), a quality level "L1".."L5", a range
"L2-L4", or "L4+" (L4 and above). When a record has several solutions of the tier, the one with the highest quality score
is used (ties: the first). The strategy (``selection.strategy``, see ``selection.strategies``) puts
the eligible records in a total order, seeded, that depends neither on N nor on the input order;
the selection is its first N, so the N=100 subset is contained in the N=200 subset. The default,
``random``, is sha256(f"{seed}:{id}") order.

With ``stratify_by`` each stratum (value of ``meta[stratify_by]``) keeps the strategy's order and the
strata are interleaved round-robin (strata in sorted order, an exhausted stratum skipped); ``diverse``
and ``s1`` have round-robin groups of their own and refuse it.

``check_pool`` runs the field checks on the uncurated pool, so a strategy that needs a field the
pool lacks fails before curation; ``select`` checks again, and counts, after curation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from limo_exp.config import SelectionConfig
from limo_exp.data.records import Example, Record, Solution
from limo_exp.selection import strategies
from limo_exp.selection.strategies import Candidate

_LEVEL = re.compile(r"^L(\d)(?:(\+)|-L?(\d))?$")


class NotEnoughRecords(ValueError):
    """Fewer eligible records, or fewer that the strategy can choose, than asked for."""


def tier_filter(tier: str) -> Callable[[Solution], bool]:
    """Predicate: does a solution belong to ``tier``?"""
    m = _LEVEL.match(tier)
    if not m:
        return lambda s: s.kind == tier or s.kind.startswith(tier + ":")
    lo = int(m.group(1))
    hi = 99 if m.group(2) else int(m.group(3) or lo)
    levels = {f"L{i}" for i in range(lo, hi + 1)}
    return lambda s: s.tier in levels


def _best(sols: list[Solution]) -> Solution:
    return max(
        sols, key=lambda s: s.quality if s.quality is not None else float("-inf")
    )  # max keeps the first


def eligible(records: list[Record], tier: str, k: int = 1) -> list[Candidate]:
    """Each record with ``k`` or more solutions of ``tier`` (the first record of an id), with its
    best one; by id."""
    ok = tier_filter(tier)
    found: dict[str, Candidate] = {}
    for r in records:
        sols = [s for s in r.solutions if ok(s)]
        if len(sols) >= max(k, 1) and r.id not in found:
            found[r.id] = (r, _best(sols))
    return [found[i] for i in sorted(found)]


def top(record: Record, tier: str, k: int) -> list[Solution]:
    """A record's ``k`` best solutions of ``tier`` by quality score (ties: in the record's order)."""
    sols = [s for s in record.solutions if tier_filter(tier)(s)]
    order = sorted(
        range(len(sols)), key=lambda i: -(sols[i].quality if sols[i].quality is not None else -1e300)
    )
    return [sols[i] for i in order[:k]]


def _reasons(dropped: dict[str, int]) -> str:
    return "; dropped: " + ", ".join(f"{n} {why}" for why, n in dropped.items()) if dropped else ""


def _tiers_of(records: list[Record]) -> str:
    """What a pool has, for a tier it lacks."""
    kinds = sorted({s.kind for r in records for s in r.solutions})
    levels = sorted({s.tier for r in records for s in r.solutions if s.tier})
    return f"; this pool's solution kinds: {kinds}" + (f", quality levels: {levels}" if levels else "")


def _needed(per_question: int, min_answers: int | None) -> int:
    """The solutions of the tier a question needs to be drawn: ``min_answers``, else k."""
    return max(per_question, min_answers or 0)


def check_pool(
    records: list[Record],
    n: int,
    tier: str,
    options: SelectionConfig | None = None,
    per_question: int = 1,
    min_answers: int | None = None,
) -> None:
    """Before curation (which only removes records): fail when the strategy needs a field no record
    has, or when even the uncurated pool has fewer than ``n`` records the strategy can choose.
    A level tier ("L3") is not known before curation scores the chains: any solution counts."""
    opts = options or SelectionConfig()
    is_level = bool(_LEVEL.match(tier))
    k = _needed(per_question, min_answers)
    cands = (
        [(r, r.solutions[0]) for r in records if len(r.solutions) >= k]
        if is_level
        else eligible(records, tier, k)
    )
    kept, dropped, _ = strategies.usable(cands, opts, scored=False)
    if len(kept) < n:
        of_tier = "with a solution" if is_level else f"with a solution of tier {tier!r}"
        why = "data.min_answers" if k > per_question else "data.answers_per_question"
        of_tier = of_tier.replace("a solution", f"{k} solutions ({why})") if k > 1 else of_tier
        raise NotEnoughRecords(
            f"asked for {n} records of tier {tier!r} with selection.strategy={opts.strategy}; before "
            f"curation, {len(cands)} of the pool's {len(records)} records are {of_tier}"
            + (f", {len(kept)} of them usable{_reasons(dropped)}" if dropped else "")
            + ("" if cands else _tiers_of(records))
        )


def select(
    records: list[Record],
    n: int,
    tier: str,
    seed: int,
    stratify_by: str | None = None,
    funnel: list[dict[str, Any]] | None = None,
    options: SelectionConfig | None = None,
    per_question: int = 1,
    shares: dict[str, float] | None = None,
    min_answers: int | None = None,
) -> list[Example]:
    """The first ``n`` eligible records in the strategy's seeded order, as training examples:
    ``per_question`` (k) solutions of each, its k best of the tier (n x k examples; a record needs
    k, or ``min_answers`` where that is more: then every k up to it draws the same questions in the
    same order); with ``shares`` (pool=mix: member -> weight) the members' orders interleaved by weight.

    Raises NotEnoughRecords when fewer than ``n`` records have a solution of ``tier``, or when the
    strategy can choose fewer than ``n`` of them; MissingField when it needs a field none has.
    """
    opts = options or SelectionConfig()
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    is_level = bool(_LEVEL.match(tier))
    if is_level and records and all(s.tier is None for r in records for s in r.solutions):
        raise ValueError(f"tier {tier!r} needs quality tiers: enable curation.quality")
    need = _needed(per_question, min_answers)
    cands = eligible(records, tier, need)
    if stratify_by and opts.strategy in ("diverse", "s1"):
        raise ValueError(f"stratify_by does not combine with selection.strategy={opts.strategy}")
    steps = (
        ("; curation funnel: " + ", ".join(f"{s['stage']} {s['in']}->{s['out']}" for s in funnel))
        if funnel
        else ""
    )
    if len(cands) < n:
        msg = f"asked for {n} records of tier {tier!r}, only {len(cands)} eligible of {len(records)} records"
        if need > per_question:
            msg += f" (data.min_answers={need}: {need} solutions each)"
        elif need > 1:
            msg += f" (data.answers_per_question={need}: {need} solutions each)"
        msg += steps
        msg += "" if cands else _tiers_of(records)  # most likely a tier the pool lacks
        raise NotEnoughRecords(msg)
    ranked, dropped = strategies.rank(cands, seed, opts)
    if len(ranked) < n:
        raise NotEnoughRecords(
            f"asked for {n} records of tier {tier!r}, selection.strategy={opts.strategy} can choose "
            f"{len(ranked)} of the {len(cands)} eligible{_reasons(dropped)}{steps}"
        )
    if stratify_by:
        ranked = strategies.round_robin(ranked, lambda c: str(c[0].meta.get(stratify_by)), str)
    if shares:
        from limo_exp.selection.mixture import MemberExhausted, interleave

        try:
            ranked = interleave(ranked, shares, n)
        except MemberExhausted as e:
            raise NotEnoughRecords(f"{e}{steps}") from None
    chosen = [
        (r, s) for r, best in ranked[:n] for s in (top(r, tier, per_question) if per_question > 1 else [best])
    ]
    return [
        Example(
            id=r.id,
            problem=r.problem,
            solution=s.text,
            answer=r.answer,
            tier=(s.tier or tier) if is_level else s.kind,
        )
        for r, s in chosen
    ]
