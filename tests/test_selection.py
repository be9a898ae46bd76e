"""Selection: exact ids for a seed, nested subsets, stratification, tiers, every strategy, clear errors."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter

import pytest
from conftest import REPO, compose

from limo_exp.config import ConfigError, SelectionConfig
from limo_exp.curation.stages import score_quality
from limo_exp.data.records import Record, Solution
from limo_exp.data.synthetic import make_pool
from limo_exp.selection import MissingField, NotEnoughRecords, check_pool, select, tier_filter
from limo_exp.selection.diverse import cluster_labels


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


# --- strategies, on twelve hand-built records ---------------------------------------------------
# Three topics of four problems (G geometry, P probability, N number theory); each topic word is
# shared by exactly two problems of its topic. One long solution each, with the word count, chain
# score, tier and MATH-like level below (G4 has no level).
TOPICS = {
    "G": ("geometry", ["triangle", "circle", "radius", "chord", "tangent", "polygon"]),
    "P": ("probability", ["coin", "dice", "marble", "urn", "shuffle", "deck"]),
    "N": ("number_theory", ["prime", "divisor", "remainder", "modulo", "factorial", "digit"]),
}
WORDS_OF = [(0, 1, 2), (0, 3, 4), (1, 3, 5), (2, 4, 5)]  # the 3 of 6 topic words of problems 1..4
LEVEL = [3, 5, 1, None, 4, 2, 5, 3, 1, 4, 2, 5]
LENGTH = [40, 10, 25, 55, 30, 70, 15, 45, 20, 60, 35, 50]
SCORE = [0.3, 0.9, 0.5, 0.7, 0.1, 0.6, 0.8, 0.2, 0.95, 0.4, 0.65, 0.55]
TIER = ["L2", "L5", "L3", "L4", "L1", "L4", "L5", "L1", "L5", "L2", "L4", "L3"]


def _hand_built() -> dict[str, Record]:
    out = {}
    for t, (key, (subject, vocab)) in enumerate(TOPICS.items()):
        for j, which in enumerate(WORDS_OF):
            i = 4 * t + j
            a, b, c = (vocab[k] for k in which)
            sol = Solution(
                " ".join(["step"] * (LENGTH[i] - 1) + ["\\boxed{1}"]), "long", "", SCORE[i], TIER[i]
            )
            meta = {"subject": subject} | ({"level": LEVEL[i]} if LEVEL[i] is not None else {})
            problem = f"Problem {i}: find x given the {a}, the {b} and the {c}."
            out[f"{key}{j + 1}"] = Record.new(problem, "1", [sol], **meta)
    return out


HAND = _hand_built()
NAME = {r.id: name for name, r in HAND.items()}
RECORDS = list(HAND.values())
# pass rates of a reference model: G2 and N1 unsolved; G4, N3, N4, P4 not measured
RATES = {"G1": 0.5, "G2": 0.0, "G3": 0.9, "N1": 0.0, "N2": 0.25, "P1": 0.75, "P2": 0.1, "P3": 1.0}


def names(text: str) -> list[str]:
    return text.split()


@pytest.fixture
def rates_file(tmp_path):
    path = tmp_path / "rates.json"
    path.write_text(json.dumps({HAND[k].id: v for k, v in RATES.items()}))
    return str(path)


def order(strategy: str, seed: int = 0, records=RECORDS, **options) -> list[str]:
    """The strategy's whole order (the largest N it can choose), by name."""
    opts = SelectionConfig(strategy=strategy, **options)
    for n in range(len(records), -1, -1):
        try:
            return [NAME[e.id] for e in select(records, n, "long", seed, options=opts)]
        except NotEnoughRecords:
            continue
    raise AssertionError("unreachable: n=0 always works")


PINNED = {  # (strategy, options, seed): the whole order
    ("random", (), 0): "G2 P4 G1 G4 P2 P3 P1 N2 N4 G3 N3 N1",
    ("random", (), 1): "N1 G1 N3 N2 G4 P3 G2 N4 P1 G3 P4 P2",
    ("tier", (), 0): "N1 G2 P3 G4 N3 P2 N4 G3 N2 G1 P4 P1",  # chain score 0.95, 0.9, 0.8, ...
    ("longest", (), 0): "P2 N2 G4 N4 P4 G1 N3 P1 G3 N1 P3 G2",  # 70, 60, 55, ... words
    ("difficult", (), 0): "G2 P3 N4 P1 N2 P4 G1 P2 N3 G3 N1",  # levels 5 5 5 4 4 3 3 2 2 1 1; G4 none
    ("difficult", (), 1): "P3 G2 N4 N2 P1 G1 P4 N3 P2 N1 G3",  # the same levels, other ties
    ("diverse", (("clusters", 3),), 0): "N2 G2 P4 N4 G1 P2 N3 G4 P3 N1 G3 P1",  # N G P, N G P, ...
    ("diverse", (("clusters", 3),), 1): "P3 N1 G1 P1 N3 G4 P4 N2 G2 P2 N4 G3",
    ("s1", (("min_level", 2),), 0): "G2 N4 P3 G1 N2 P2 G3 N3 N1",  # P1, P4 below L2; G4 no level
    ("s1", (("min_level", 2),), 1): "G2 P3 N4 G1 P2 N2 G3 N3 N1",  # domains in another order
}


@pytest.mark.parametrize("strategy, options, seed", list(PINNED), ids=str)
def test_every_strategy_pins_its_order_and_is_nested(strategy, options, seed):
    full = order(strategy, seed, **dict(options))
    assert full == names(PINNED[strategy, options, seed])
    opts = SelectionConfig(strategy=strategy, **dict(options))
    for n in range(len(full) + 1):  # the choice of N is the first N of the choice of N + 1: nested
        assert [NAME[e.id] for e in select(RECORDS, n, "long", seed, options=opts)] == full[:n]
    assert order(strategy, seed, RECORDS[::-1], **dict(options)) == full  # input order does not matter


def test_random_strategy_is_the_default_order(pool):
    opts = SelectionConfig(strategy="random")
    assert ids(select(pool, 30, "L3", 7, "subject", options=opts)) == ids(
        select(pool, 30, "L3", 7, "subject")
    )


def test_difficult_ranks_by_pass_rates(rates_file, tmp_path):
    assert order("difficult", pass_rates=rates_file) == names("G2 N1 P2 N2 G1 P1 G3 P3")  # unsolved first
    solved = order("difficult", pass_rates=rates_file, drop_unsolved=True)
    assert solved == names("P2 N2 G1 P1 G3 P3")
    jsonl = tmp_path / "rates.jsonl"  # the other format: one {"id", "pass_rate"} per line
    jsonl.write_text("".join(json.dumps({"id": HAND[k].id, "pass_rate": v}) + "\n" for k, v in RATES.items()))
    assert order("difficult", pass_rates=str(jsonl), drop_unsolved=True) == solved
    # s1: P1 is below L2; G, N, P round-robin, each domain the lowest pass rate first
    assert order("s1", pass_rates=rates_file, drop_unsolved=True, min_level=2) == names("G1 N2 P2 G3 P3")


def test_diverse_finds_the_topics_and_covers_every_cluster_before_repeating_one(pool):
    by_id = sorted(HAND, key=lambda k: HAND[k].id)
    label = dict(zip(by_id, cluster_labels([HAND[k].problem for k in by_id], 3)))
    assert {t: {label[k] for k in HAND if k[0] == t} for t in TOPICS} == {"G": {2}, "N": {0}, "P": {1}}
    # on the synthetic pool: each record is from a cluster drawn from least so far, among those left
    rows = sorted(pool, key=lambda r: r.id)
    label = dict(zip((r.id for r in rows), cluster_labels([r.problem for r in rows], 8)))
    size = Counter(label.values())
    assert len(size) >= 4  # k-means may leave a cluster empty (here: problems without a kept word)
    seen: Counter = Counter()
    for e in select(pool, 200, "long", 0, options=SelectionConfig(strategy="diverse", clusters=8)):
        left = [k for k in size if seen[k] < size[k]]
        assert seen[label[e.id]] == min(seen[k] for k in left), "a cluster repeated before another's turn"
        seen[label[e.id]] += 1


def test_cluster_labels_are_deterministic():
    texts = [HAND[k].problem for k in sorted(HAND)]
    assert cluster_labels(texts, 4) == cluster_labels(list(texts), 4)
    assert cluster_labels([], 3) == [] and cluster_labels(["a b"], 3) == [0]


def test_stratify_by_keeps_the_strategy_order_within_strata():
    got = [NAME[e.id] for e in select(RECORDS, 6, "long", 0, "subject", options=SelectionConfig("longest"))]
    assert got == names("G4 N2 P2 G1 N4 P4")  # geometry, number_theory, probability: longest first each


def test_strategy_errors_name_the_field_and_the_counts(pool, rates_file):
    needs_level = r"selection.strategy=difficult needs a numeric meta.level .* pool: \['difficulty'\]"
    with pytest.raises(MissingField, match=needs_level):
        select(pool, 5, "long", 0, options=SelectionConfig("difficult"))
    assert len(select(pool, 5, "long", 0, options=SelectionConfig("difficult", "difficulty"))) == 5
    with pytest.raises(MissingField, match=r"selection.strategy=s1 goes round-robin over meta.topic"):
        select(RECORDS, 2, "long", 0, options=SelectionConfig("s1", domain_field="topic"))
    with pytest.raises(
        MissingField, match="selection.strategy=tier needs chain scores: enable curation.quality"
    ):
        select(make_pool(5), 2, "long", 0, options=SelectionConfig("tier"))
    with pytest.raises(
        MissingField, match=r"no rate for any of the 200 candidate records \(8 ids in the file\)"
    ):
        select(pool, 2, "long", 0, options=SelectionConfig("difficult", pass_rates=rates_file))
    with pytest.raises(ConfigError, match="selection.pass_rates=/nope.json: .*No such file"):
        select(pool, 2, "long", 0, options=SelectionConfig("difficult", pass_rates="/nope.json"))
    opts = SelectionConfig("difficult", pass_rates=rates_file, drop_unsolved=True)
    with pytest.raises(
        NotEnoughRecords,
        match=r"asked for 11 records of tier 'long', selection.strategy=difficult can choose 6 of the 12 "
        r"eligible; dropped: 4 without a pass rate, 2 unsolved \(pass rate 0\); curation funnel: load 12->12",
    ):
        select(RECORDS, 11, "long", 0, funnel=[{"stage": "load", "in": 12, "out": 12}], options=opts)
    with pytest.raises(ValueError, match="stratify_by does not combine with selection.strategy=diverse"):
        select(RECORDS, 2, "long", 0, "subject", options=SelectionConfig("diverse"))


def test_check_pool_fails_before_curation():
    raw = make_pool(30)  # no chain scores yet: a level tier counts any solution, s1's quality stage waits
    check_pool(raw, 30, "L4+", SelectionConfig("s1", "difficulty", min_level=4))
    with pytest.raises(MissingField, match=r"meta.level .*\['difficulty'\]"):
        check_pool(raw, 1, "long", SelectionConfig("difficult"))
    with pytest.raises(
        NotEnoughRecords,
        match=r"asked for 31 records of tier 'long' with selection.strategy=random; before curation, "
        r"30 of the pool's 30 records are with a solution of tier 'long'$",
    ):
        check_pool(raw, 31, "long")
    with pytest.raises(NotEnoughRecords, match=r"0 of the pool's 30 records .*; this pool's solution kinds"):
        check_pool(raw, 1, "human")


def _parse(*overrides: str):
    from omegaconf import OmegaConf

    from limo_exp.identity import RunSpec

    return RunSpec.parse(OmegaConf.to_container(compose(list(overrides)), resolve=True))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["selection.strategy=best"], r"selection.strategy='best' is not one of \('random', 'tier'"),
        (["+selection.clusters=8"], "selection.clusters is not read by selection.strategy=random"),
        (["selection=difficult", "selection.drop_unsolved=true"], "drop_unsolved needs selection.pass_rates"),
        (
            ["selection=diverse", "selection.clusters=0"],
            "selection.clusters and selection.min_level must be >= 1",
        ),
        (["selection=s1", "data.stratify_by=level"], "strategy=s1 goes round-robin over groups of its own"),
        (
            ["selection=tier", "curation.quality.enabled=false"],
            "selection.strategy=tier ranks by chain scores",
        ),
        (
            ["+selection.colour=red"],
            r"unknown config key selection.colour; valid keys of selection: \['strategy'",
        ),
    ],
)
def test_bad_selection_config_names_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _parse(*overrides)


def test_the_default_selection_is_random():
    assert _parse().config.selection == SelectionConfig()
    assert _parse().params()["selection.strategy"] == "random"  # an MLflow param of every run


def test_a_missing_field_fails_before_curation(small_cfg, monkeypatch):
    from limo_exp import curation
    from limo_exp.commands.run import run

    monkeypatch.setattr(curation, "curate_cached", lambda *a, **k: pytest.fail("curated before the check"))
    with pytest.raises(MissingField, match=r"selection.strategy=difficult needs a numeric meta.level"):
        run(small_cfg("selection=difficult"))
