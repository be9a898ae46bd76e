"""Benchmark loading: local files and (faked) hub datasets normalise to the same BenchItems."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
from conftest import EVAL_DIR, needs_eval_data

from limo_exp.data.benchmarks import (
    BENCHMARKS,
    file_hash,
    gpqa_permutation,
    load_benchmark,
    normalize_answer,
)
from limo_exp.data.fingerprints import items_digest

GPQA_DIR = Path(__file__).parent / "data"


@needs_eval_data
@pytest.mark.parametrize(
    "name,count,first_id,first_answer",
    [
        ("aime24", 30, "60", "204"),
        ("aime25", 30, "I-1", "70"),
        ("amc23", 40, "0", "27"),
        ("math500", 500, "test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("olympiadbench", 675, "1606", "2"),
    ],
)
def test_local_counts_and_first_item(name, count, first_id, first_answer):
    items = load_benchmark(name, EVAL_DIR)
    assert len(items) == count
    assert (items[0].id, items[0].answer) == (first_id, first_answer)
    assert all(i.task == name and i.problem and i.answers for i in items)
    assert all(isinstance(a, str) for i in items for a in i.answers)
    assert len({i.canonical_id for i in items}) == count  # canonical ids tell every item apart


@needs_eval_data
def test_aime25_halves_and_amc_floats():
    aime = load_benchmark("aime25", EVAL_DIR)
    assert [i.id for i in aime[:1] + aime[15:16]] == ["I-1", "II-1"]
    assert len({i.id for i in aime}) == 30
    amc = load_benchmark("amc23", EVAL_DIR)
    raw = [json.loads(line)["answer"] for line in (EVAL_DIR / "amc23.jsonl").open()]
    assert isinstance(raw[0], float)
    assert [i.answer for i in amc] == [normalize_answer(a) for a in raw]
    assert not any(a.endswith(".0") for i in amc for a in i.answers)


@needs_eval_data
def test_olympiadbench_multi_answers():
    items = {i.id: i for i in load_benchmark("olympiadbench", EVAL_DIR)}
    multi = [i for i in items.values() if i.meta.get("is_multiple_answer")]
    assert len(multi) == 94
    assert sum(len(i.answers) > 1 for i in multi) >= 80
    tuples = next(i for i in multi if i.answer.startswith("(1,8,19)"))
    assert tuples.answers == ["(1,8,19)", "(2,7,13)", "(4,5,7)"]
    single = [i for i in items.values() if not i.meta.get("is_multiple_answer")]
    assert all(len(i.answers) == 1 and "$" not in i.answers[0] for i in single)


def test_normalize_answer():
    assert normalize_answer(27.0) == "27"
    assert normalize_answer("27.0") == "27"
    assert normalize_answer(27) == "27"
    assert normalize_answer(" 0.5 ") == "0.5"
    assert normalize_answer("\\frac{1}{2}") == "\\frac{1}{2}"


def test_gpqa_local_file_and_permutation():
    items = load_benchmark("gpqa_diamond", GPQA_DIR, gpqa_seed=0)
    assert len(items) == 12
    rows = [json.loads(line) for line in (GPQA_DIR / "gpqa_diamond.jsonl").open()]
    for item, row in zip(items, rows):
        options = [row["Correct Answer"]] + [row[f"Incorrect Answer {k}"] for k in (1, 2, 3)]
        assert sorted(item.choices) == sorted(options)
        assert item.choices["ABCD".index(item.answer)] == row["Correct Answer"]
    again = load_benchmark("gpqa_diamond", GPQA_DIR, gpqa_seed=0)
    assert [(i.answer, i.choices) for i in again] == [(i.answer, i.choices) for i in items]
    other = load_benchmark("gpqa_diamond", GPQA_DIR, gpqa_seed=1)
    assert [i.choices for i in other] != [i.choices for i in items]
    assert {i.answer for i in items} == set("ABCD")


def test_gpqa_permutation_spreads_gold_letters():
    letters = Counter("ABCD"[gpqa_permutation(f"question {k}", 0).index(0)] for k in range(400))
    assert set(letters) == set("ABCD")
    assert all(70 <= c <= 130 for c in letters.values()), letters
    assert gpqa_permutation("q", 3) == gpqa_permutation("q", 3)


def test_gpqa_csv(tmp_path):
    rows = [json.loads(line) for line in (GPQA_DIR / "gpqa_diamond.jsonl").open()]
    with (tmp_path / "gpqa_diamond.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    from_csv = load_benchmark("gpqa_diamond", tmp_path)
    from_jsonl = load_benchmark("gpqa_diamond", GPQA_DIR)
    assert [(i.problem, i.answer, i.choices) for i in from_csv] == [
        (i.problem, i.answer, i.choices) for i in from_jsonl
    ]


def test_synthetic_benchmark():
    items = load_benchmark("synthetic", synthetic_n=5, synthetic_seed=0)
    assert len(items) == 5 and all(i.answer.lstrip("-").isdigit() for i in items)
    assert items_digest(items) == items_digest(load_benchmark("synthetic", synthetic_n=5))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        load_benchmark("aime1999")
    for name in BENCHMARKS:
        assert name in str(err.value)


def test_missing_local_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="math500"):
        load_benchmark("math500", tmp_path)


@needs_eval_data
def test_file_hash_is_sha256_of_the_files():
    assert (
        file_hash("math500", EVAL_DIR)
        == hashlib.sha256((EVAL_DIR / "math500.jsonl").read_bytes()).hexdigest()
    )
    both = (EVAL_DIR / "aime25_I.jsonl").read_bytes() + (EVAL_DIR / "aime25_II.jsonl").read_bytes()
    assert file_hash("aime25", EVAL_DIR) == hashlib.sha256(both).hexdigest()


def test_hub_path_uses_dataset_ids(monkeypatch):
    """Without data_dir, rows come from datasets.load_dataset(id, config, split) (faked here)."""
    calls = []
    fake_rows = {
        ("opencompass/AIME2025", "AIME2025-I"): [{"question": "Q1", "answer": "70"}],
        ("opencompass/AIME2025", "AIME2025-II"): [{"question": "Q2", "answer": "336^\\circ"}],
        ("Maxwell-Jia/AIME_2024", None): [{"ID": "2024-I-1", "Problem": "P", "Solution": "S", "Answer": 204}],
        ("math-ai/amc23", None): [{"id": 0, "question": "Q", "answer": 27.0}],
        ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP"): [
            {
                "id": 1,
                "question": "Q",
                "context": None,
                "final_answer": ["$1$,$3$"],
                "is_multiple_answer": True,
            }
        ],
    }

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return fake_rows[(path, name)]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    aime25 = load_benchmark("aime25")
    assert [(i.id, i.problem, i.answer) for i in aime25] == [
        ("I-1", "Q1", "70"),
        ("II-1", "Q2", "336"),
    ]  # the hub's "336^\\circ": degrees dropped
    assert calls == [
        ("opencompass/AIME2025", "AIME2025-I", "test"),
        ("opencompass/AIME2025", "AIME2025-II", "test"),
    ]
    aime24 = load_benchmark("aime24")
    assert (aime24[0].id, aime24[0].problem, aime24[0].answer) == ("2024-I-1", "P", "204")
    assert load_benchmark("amc23")[0].answer == "27"
    assert load_benchmark("olympiadbench")[0].answers == ["1", "3"]


def test_group_member_without_local_file_is_skipped_and_named(tmp_path):
    """limo_paper on a folder without GPQA runs the other five; GPQA asked by name is an error."""
    from limo_exp.evaluation.registry import resolve_tasks

    (tmp_path / "amc23.jsonl").write_text('{"id": 0, "problem": "p", "answer": 27.0}\n')
    kept, skipped = resolve_tasks(["limo_amc23", "limo_synthetic"], str(tmp_path))
    assert kept == ["limo_amc23", "limo_synthetic"] and skipped == {}
    kept, skipped = resolve_tasks(["limo_paper"], str(tmp_path))
    assert kept == ["limo_amc23"]
    assert set(skipped) == {
        "limo_aime24",
        "limo_aime25",
        "limo_math500",
        "limo_olympiadbench",
        "limo_gpqa_diamond",
    }
    assert "gpqa_diamond.jsonl" in skipped["limo_gpqa_diamond"]
    with pytest.raises(FileNotFoundError, match="limo_gpqa_diamond"):
        resolve_tasks(["limo_gpqa_diamond"], str(tmp_path))
    assert resolve_tasks(["limo_paper"], None)[1] == {}  # the hub: nothing skipped


def _fake_hub(monkeypatch, tables: dict):
    def load_dataset(path, name=None, split=None):
        return tables[(path, name)]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))


@needs_eval_data
def test_hub_and_local_aime24_are_the_same_benchmark(monkeypatch):
    """The hub copy (Maxwell-Jia/AIME_2024): another order, ids like 2024-I-1, int answers without
    zero padding. Same problems: same canonical ids and fingerprint; one problem edited: not."""
    from limo_exp.data.fingerprints import item_set_difference

    local = load_benchmark("aime24", EVAL_DIR)
    rows = [json.loads(line) for line in (EVAL_DIR / "aime24.jsonl").read_text().splitlines() if line.strip()]
    hub_rows = [
        {
            "ID": f"2024-{'I' if k < 15 else 'II'}-{k % 15 + 1}",
            "Problem": r["problem"],
            "Solution": "",
            "Answer": int(r["answer"]),
        }
        for k, r in enumerate(reversed(rows))
    ]
    _fake_hub(monkeypatch, {("Maxwell-Jia/AIME_2024", None): hub_rows})
    hub = load_benchmark("aime24")
    assert [i.id for i in hub][:2] == ["2024-I-1", "2024-I-2"] and hub[0].id != local[0].id
    assert sorted(i.canonical_id for i in hub) == sorted(i.canonical_id for i in local)
    assert items_digest(hub) == items_digest(local)
    assert item_set_difference(local, hub) == {"only_a": [], "only_b": [], "answer_differs": []}

    hub_rows[0] = {**hub_rows[0], "Problem": hub_rows[0]["Problem"] + " (revised)"}  # a corrected problem
    revised = load_benchmark("aime24")
    assert items_digest(revised) != items_digest(local)
    diff = item_set_difference(local, revised)
    assert len(diff["only_a"]) == 1 and diff["only_b"] == ["2024-I-1"]


@needs_eval_data
def test_olympiadbench_674_on_the_hub_against_675_local(monkeypatch):
    from limo_exp.data.fingerprints import item_set_difference

    rows = [
        json.loads(line)
        for line in (EVAL_DIR / "olympiadbench.jsonl").read_text().splitlines()
        if line.strip()
    ]
    hub_rows = [
        {**r, "final_answer": [str(a) for a in r["final_answer"]]} for r in rows if r["id"] != rows[100]["id"]
    ]
    _fake_hub(monkeypatch, {("Hothan/OlympiadBench", "OE_TO_maths_en_COMP"): hub_rows})
    local, hub = load_benchmark("olympiadbench", EVAL_DIR), load_benchmark("olympiadbench")
    assert (len(local), len(hub)) == (675, 674)
    assert item_set_difference(local, hub) == {
        "only_a": [str(rows[100]["id"])],
        "only_b": [],
        "answer_differs": [],
    }
    assert items_digest(local) != items_digest(hub)


def test_gold_answers_are_normalised_whatever_the_source():
    assert [
        normalize_answer(v) for v in ("336^\\circ", "336^{\\circ}", "90°", "025", "0", 27.0, "27.0", 204)
    ] == [
        "336",
        "336",
        "90",
        "25",
        "0",
        "27",
        "27",
        "204",
    ]
    assert normalize_answer("\\frac{1}{2}") == "\\frac{1}{2}" and normalize_answer("0.5") == "0.5"


def test_hub_loads_are_pinned_and_recorded(monkeypatch):
    """eval.revision / pool.revision reach load_dataset; every hub load records its commit and rows."""
    from limo_exp.config import EvalConfig, PoolConfig
    from limo_exp.data import hub
    from limo_exp.data.pools import load_pool_from_config
    from limo_exp.evaluation.registry import benchmarks_for

    calls = []

    def load_dataset(path, name=None, split=None, **kw):
        calls.append((path, kw.get("revision")))
        if path == "GAIR/LIMO":
            ds = types.SimpleNamespace(column_names=["question", "solution", "answer"])
            rows = [{"question": "What is 3+4?", "solution": "\\boxed{7}", "answer": "7"}]
            return type("FakeDS", (list,), {"column_names": ds.column_names})(rows)
        return [{"id": 0, "question": "Q", "answer": "27"}, {"id": 1, "question": "R", "answer": "3"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(hub, "resolve_revision", lambda repo, rev: f"sha-of-{rev or 'main'}")
    monkeypatch.setattr(hub, "_LOADED", {})
    items = benchmarks_for(EvalConfig(tasks=["limo_amc23"], revision={"amc23": "v2"}))
    assert len(items["amc23"]) == 2 and calls == [("math-ai/amc23", "v2")]
    load_pool_from_config(PoolConfig(name="limo", revision="abc123"))
    assert calls[-1] == ("GAIR/LIMO", "abc123")
    assert hub.as_tags(hub.loaded()) == {
        "limo.hub.math-ai/amc23/test": "sha-of-v2 rows=2",
        "limo.hub.GAIR/LIMO/train": "sha-of-abc123 rows=1",
    }
    assert hub.resolve_revision.__name__ == "<lambda>"  # the real one asks the hub; offline it says so


def test_revision_is_unresolved_offline(monkeypatch):
    from limo_exp.data import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.resolve_revision("Maxwell-Jia/AIME_2024", "v1").endswith("(unresolved)")
