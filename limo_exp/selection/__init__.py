"""Selection: N training examples out of a curated pool, seeded and nested (the N=100 choice is
inside the N=200 choice for the same seed).

select.py holds today's strategy: one quality tier (a solution kind or chain-score level).
Further strategies (random, longest, difficult, diverse, ...) go beside it as modules of their
own with the same contract: ``(records, n, seed, ...) -> list[Example]``, nested.
"""

from limo_exp.selection.select import NotEnoughRecords, select, tier_filter

__all__ = ["NotEnoughRecords", "select", "tier_filter"]
