"""Selection: exact ids for a seed, nested subsets, stratification, tiers, clear errors."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter

import pytest
from conftest import REPO

from limo_exp.curation.stages import score_quality
from limo_exp.data.records import Record, Solution
from limo_exp.data.synthetic import make_pool
from limo_exp.selection import NotEnoughRecords, select, tier_filter


@pytest.fixture(scope="module")
def pool():
    return score_quality(make_pool(200), 5)


def ids(examples):
    return [e.id for e in examples]


def test_exact_ids_for_a_seed(pool):
    assert ids(select(pool, 5, "long", 0)) == [
        "2b3ff32ac6eb007e",
        "9c14e5e5eb8080f4",
        "ff0db859ec2ec270",
        "b97ac535da5c229c",
        "ef6f7cd06681b6eb",
    ]
    assert ids(select(pool, 5, "long", 1)) == [
        "21dac6eb0b940d7a",
        "13caeade7a352fa7",
        "4f06028b2635ea3b",
        "4e499530be1b39c4",
        "ec479d724954eafb",
    ]
    assert [(e.id, e.tier) for e in select(pool, 4, "L4+", 0)] == [
        ("2b3ff32ac6eb007e", "L5"),
        ("9c14e5e5eb8080f4", "L5"),
        ("ff0db859ec2ec270", "L4"),
        ("b97ac535da5c229c", "L5"),
    ]
    assert ids(select(pool, 6, "short", 0, stratify_by="subject")) == [
        "dd33e366d6046955",
        "2b3ff32ac6eb007e",
        "ef6f7cd06681b6eb",
        "ff0db859ec2ec270",
        "b97ac535da5c229c",
        "69fd0072126ded43",
    ]


def test_same_ids_in_another_process(pool):
    code = (
        "from limo_exp.curation.stages import score_quality; from limo_exp.data.synthetic import make_pool; "
        "from limo_exp.selection import select; "
        "print(','.join(e.id for e in select(score_quality(make_pool(200), 5), 30, 'L3', 7, 'subject')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert out.stdout.strip().split(",") == ids(select(pool, 30, "L3", 7, "subject"))


@pytest.mark.parametrize(
    "tier, stratify", [("long", None), ("short", "subject"), ("L2-L4", None), ("L5", "subject")]
)
def test_nested(pool, tier, stratify):
    sizes = [1, 5, 10, 20, 25]
    subsets = [ids(select(pool, n, tier, 3, stratify)) for n in sizes]
    for small, big in itertools.pairwise(subsets):
        assert big[: len(small)] == small  # a prefix, so also a subset
    assert len(set(subsets[-1])) == 25


def test_independent_of_input_order(pool):
    assert ids(select(pool[::-1], 40, "long", 0)) == ids(select(pool, 40, "long", 0))


def test_stratified_round_robin_balances(pool):
    ex = select(pool, 24, "long", 0, stratify_by="subject")
    subject = {r.id: r.meta["subject"] for r in pool}
    assert set(Counter(subject[e.id] for e in ex).values()) == {4}  # 6 subjects x 4


def test_not_enough_records(pool):
    funnel = [{"stage": "load", "in": 200, "out": 200}, {"stage": "verify", "in": 200, "out": 200}]
    with pytest.raises(
        NotEnoughRecords,
        match=r"asked for 500 records of tier 'long', only 200 eligible of 200 "
        r"records; curation funnel: load 200->200, verify 200->200",
    ):
        select(pool, 500, "long", 0, funnel=funnel)
    with pytest.raises(NotEnoughRecords, match="only 0 eligible"):
        select(pool, 1, "human", 0)
    with pytest.raises(ValueError, match="needs quality tiers"):
        select(make_pool(5), 1, "L3", 0)


def test_tiers_and_best_solution():
    low, high = Solution("a", "long", quality=0.2, tier="L2"), Solution("b", "long", quality=0.9, tier="L5")
    r = Record.new("p", "1", [low, high])
    (ex,) = select([r], 1, "long", 0)
    assert (ex.solution, ex.tier) == ("b", "long")  # the best solution of the tier
    (ex,) = select([r], 1, "L1-L3", 0)
    assert (ex.solution, ex.tier) == ("a", "L2")
    assert tier_filter("L4+")(high) and not tier_filter("L4+")(low)
    assert tier_filter("L2")(low) and not tier_filter("L2")(high)
    assert select([r], 0, "long", 0) == []


def test_unknown_tier_names_the_tiers_the_pool_has():
    from limo_exp.data.synthetic import make_pool
    from limo_exp.selection import NotEnoughRecords, select

    with pytest.raises(NotEnoughRecords, match=r"solution kinds: \['answer_only', 'long', 'short'\]"):
        select(make_pool(5), 2, "lon", seed=0)
