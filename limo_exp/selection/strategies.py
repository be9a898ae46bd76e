"""Selection strategies (``selection.strategy``): each puts the candidates (a record of the quality
tier and its best solution of the tier) in a total order that does not depend on N; the selection
is the first N, so every strategy is nested. Ties, and all that a strategy does not rank, go by
the seeded hash sha256(f"{seed}:{id}"); no order depends on the input order.

- ``random``: the seeded hash order alone (the control).
- ``tier``: highest chain score first (``Solution.quality`` of the record's best solution of the
  tier, set by curation.quality); not an alias of ``random``: within one tier, the best chains first.
- ``longest``: longest solution first, length = whitespace-separated words (s1's baseline).
- ``difficult``: hardest first: the larger ``meta[difficulty_field]`` (MATH level 5 before 1) or,
  with ``pass_rates``, the lower pass rate of a reference model (0: no sample solved it). Records
  without a value are dropped; ``drop_unsolved`` drops pass rate 0 as well.
- ``diverse``: k clusters of the problem text (``selection.diverse``), visited round-robin: clusters
  in a seeded order (hash of seed and the cluster's smallest id), each in seeded hash order, so
  every cluster gives one record before any gives a second.
- ``s1``: s1's three stages. Quality: keep solutions of chain-score level ``L<min_level>`` or
  better; difficulty: as ``difficult``; diversity: round-robin across the domains
  (``meta[domain_field]``, a record without one is in domain "None") in a seeded order, each domain
  hardest first.

``usable`` applies the stages that drop records (and fails on a field no candidate has);
``rank`` orders what is left.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from itertools import zip_longest
from typing import Any

from limo_exp.config import SelectionConfig
from limo_exp.data.records import Record, Solution
from limo_exp.selection import diverse
from limo_exp.typed import ConfigError

Candidate = tuple[Record, Solution]
_RANKED_BY_DIFFICULTY = ("difficult", "s1")


class MissingField(ConfigError):
    """A strategy needs a field, score or pass rate that no candidate has."""


def hash_key(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def round_robin(items: list, group: Callable[[Any], str], group_key: Callable[[str], Any]) -> list:
    """Interleave the groups of ``items`` (each keeping its order), groups sorted by ``group_key``,
    one item of each group per round, an exhausted group skipped."""
    groups: dict[str, list] = {}
    for it in items:
        groups.setdefault(group(it), []).append(it)
    rounds = zip_longest(*(groups[g] for g in sorted(groups, key=group_key)))
    return [it for r in rounds for it in r if it is not None]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _score(s: Solution) -> float:
    return s.quality if s.quality is not None else float("-inf")


def _level(s: Solution) -> int:
    m = re.fullmatch(r"L(\d+)", s.tier or "")
    return int(m.group(1)) if m else 0


def load_rates(path: str) -> dict[str, float]:
    """Pass rates by id (``curation.stages.load_pass_rates``), with errors that name the key."""
    from limo_exp.curation.stages import load_pass_rates

    try:
        rates = load_pass_rates(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"selection.pass_rates={path}: {e}") from None
    bad = next((i for i, v in rates.items() if not 0 <= v <= 1), None)
    if bad is not None:
        raise ConfigError(f"selection.pass_rates={path}: pass rate of {bad} is {rates[bad]}, not in [0, 1]")
    return rates


def hardness(cands: list[Candidate], opts: SelectionConfig) -> tuple[dict[str, float], set[str]]:
    """(difficulty by id, higher = harder; ids no sample solved) for the candidates that have a value.

    Raises MissingField when candidates exist and none has a value."""
    s = opts.strategy
    if opts.pass_rates:
        rates = load_rates(opts.pass_rates)
        hard = {r.id: 1.0 - rates[r.id] for r, _ in cands if r.id in rates}
        if cands and not hard:
            raise MissingField(
                f"selection.strategy={s} ranks by selection.pass_rates={opts.pass_rates}, which has no "
                f"rate for any of the {len(cands)} candidate records ({len(rates)} ids in the file)"
            )
        return hard, {i for i in hard if rates[i] == 0}
    f = opts.difficulty_field
    hard = {r.id: float(r.meta[f]) for r, _ in cands if _number(r.meta.get(f))}
    if cands and not hard:
        fields = sorted({k for r, _ in cands for k, v in r.meta.items() if _number(v)})
        raise MissingField(
            f"selection.strategy={s} needs a numeric meta.{f} (selection.difficulty_field), which no "
            f"candidate record has; numeric meta fields of the pool: {fields}; or set selection.pass_rates"
        )
    return hard, set()


def usable(
    cands: list[Candidate], opts: SelectionConfig, scored: bool = True
) -> tuple[list[Candidate], dict[str, int], dict[str, float]]:
    """The candidates the strategy can rank, what it dropped and why (reason -> count), and the
    difficulty of each kept one (difficult, s1). ``scored=False``: before curation, chain scores
    are not there yet: their checks and s1's quality stage are skipped."""
    s, dropped, hard = opts.strategy, {}, {}

    def keep(kept: list[Candidate], why: str) -> list[Candidate]:
        if len(kept) < len(cands):
            dropped[why] = len(cands) - len(kept)
        return kept

    if scored and s in ("tier", "s1") and cands and all(sol.quality is None for _, sol in cands):
        raise MissingField(f"selection.strategy={s} needs chain scores: enable curation.quality")
    if scored and s == "s1":
        cands = keep([c for c in cands if _level(c[1]) >= opts.min_level], f"below L{opts.min_level}")
    if s in _RANKED_BY_DIFFICULTY:
        hard, unsolved = hardness(cands, opts)
        source = "a pass rate" if opts.pass_rates else f"a numeric meta.{opts.difficulty_field}"
        cands = keep([c for c in cands if c[0].id in hard], f"without {source}")
        if opts.drop_unsolved:
            cands = keep([c for c in cands if c[0].id not in unsolved], "unsolved (pass rate 0)")
    if s == "s1" and cands and all(r.meta.get(opts.domain_field) is None for r, _ in cands):
        raise MissingField(
            f"selection.strategy=s1 goes round-robin over meta.{opts.domain_field} (selection.domain_field), "
            f"which no candidate record has; meta fields of the pool: {_fields(r for r, _ in cands)}"
        )
    return cands, dropped, hard


def _fields(records: Iterable[Record]) -> list[str]:
    return sorted({k for r in records for k in r.meta})


def rank(cands: list[Candidate], seed: int, opts: SelectionConfig) -> tuple[list[Candidate], dict[str, int]]:
    """The usable candidates in the strategy's order, and what was dropped (reason -> count)."""
    cands, dropped, hard = usable(cands, opts)
    s = opts.strategy

    def h(c: Candidate) -> str:
        return hash_key(seed, c[0].id)

    if s == "random":
        return sorted(cands, key=h), dropped
    if s == "tier":
        return sorted(cands, key=lambda c: (-_score(c[1]), h(c))), dropped
    if s == "longest":
        return sorted(cands, key=lambda c: (-len(c[1].text.split()), h(c))), dropped
    if s == "diverse":
        by_id = sorted(cands, key=lambda c: c[0].id)
        labels = diverse.cluster_labels([r.problem for r, _ in by_id], opts.clusters)
        label = {c[0].id: str(lab) for c, lab in zip(by_id, labels, strict=True)}
        first = {}  # a cluster's name for the seeded order: its smallest id
        for c in by_id:
            first.setdefault(label[c[0].id], c[0].id)
        order = sorted(cands, key=h)
        return round_robin(
            order, lambda c: label[c[0].id], lambda g: hash_key(seed, f"cluster:{first[g]}")
        ), dropped
    hardest = sorted(cands, key=lambda c: (-hard[c[0].id], h(c)))
    if s == "difficult":
        return hardest, dropped
    domain = opts.domain_field
    return round_robin(
        hardest, lambda c: str(c[0].meta.get(domain)), lambda g: hash_key(seed, f"domain:{g}")
    ), dropped
