"""Selection: N training examples out of a curated pool, seeded and nested (the N=100 choice is
inside the N=200 choice for the same seed).

select.py takes the records of one quality tier (a solution kind or chain-score level) and hands
them to a strategy (strategies.py: random, tier, longest, difficult, diverse, s1), which puts them
in a total order that does not depend on N; the selection is the first N. diverse.py clusters
problem text for the ``diverse`` strategy.
"""

from limo_exp.selection.select import NotEnoughRecords, check_pool, eligible, select, tier_filter
from limo_exp.selection.strategies import MissingField

__all__ = ["MissingField", "NotEnoughRecords", "check_pool", "eligible", "select", "tier_filter"]
