"""Pool loading: real files normalised to Records, field mappings, clear errors on bad input."""

from __future__ import annotations

import json
import sys
import types
from typing import ClassVar

import pytest
import yaml
from conftest import CONF_DIR, POOL_DIR

from limo_exp.config import ConfigError, PoolConfig
from limo_exp.data.fingerprints import pool_fingerprint
from limo_exp.data.pool_text import clean_solution, extract_answer, last_boxed
from limo_exp.data.pools import (
    POOL_NAMES,
    SOURCES,
    PoolFormatError,
    load_pool,
    load_pool_from_config,
)
from limo_exp.data.synthetic import make_pool

CONF = CONF_DIR


def test_math_train_real(shared_data):
    recs = load_pool("math_train", data_dir=str(POOL_DIR))
    assert len(recs) == 7500
    r = recs[0]  # train/algebra/0.json: piecewise function, a+b = 0
    assert r.answer == "0" and r.meta == {"source": "math_train", "level": 5, "subject": "Algebra"}
    assert r.solutions[0].kind == "human" and r.solutions[0].source == "math_train"
    assert {x.meta["level"] for x in recs} == {1, 2, 3, 4, 5, None}  # two problems are "Level ?"
    assert sum(not x.answer for x in recs) == 2  # two solutions have no \boxed{}


def test_gsm8k_real(shared_data):
    recs = load_pool("gsm8k", data_dir=str(POOL_DIR))
    assert len(recs) == 7473
    r = recs[0]
    assert r.answer == "72"
    assert "<<" not in r.solutions[0].text and "####" not in r.solutions[0].text
    assert r.solutions[0].text.endswith("The final answer is $\\boxed{72}$.")
    assert all("," not in x.answer for x in recs)  # "#### 1,000" -> "1000"


def test_aime_historical_real(shared_data):
    recs = load_pool("aime_historical", data_dir=str(POOL_DIR))
    assert len(recs) == 975
    assert recs[0].answer == "60"
    assert recs[0].meta["year"] == 1983 and recs[0].meta["difficulty"] == 4.0
    assert isinstance(recs[0].meta["year"], int)


def test_synthetic_and_fingerprint():
    recs = load_pool("synthetic", n=10, seed=0)
    assert [r.id for r in recs] == [r.id for r in make_pool(10, 0)]
    assert load_pool_from_config(PoolConfig.from_dict({"name": "synthetic", "n": 10, "seed": 0})) == recs
    fp = pool_fingerprint(recs)
    assert fp == pool_fingerprint(make_pool(10, 0)) == "d480423e18586f19"
    recs[3].solutions[0].text += " "
    assert pool_fingerprint(recs) != fp


def test_answer_extraction():
    assert last_boxed(r"so $\boxed{1}$ no, \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{\left( 3, \frac{\pi}{2} \right)}") == r"\left( 3, \frac{\pi}{2} \right)"
    assert last_boxed(r"answer \boxed 5") == "5"
    assert last_boxed("no box") is None and last_boxed(r"\boxed{unbalanced") is None
    assert extract_answer("He pays 2 + 3 = 5.\n#### 1,000") == "1000"
    assert extract_answer("128") == "128"  # a bare answer (s1K reference solutions)
    assert clean_solution("48/2 = <<48/2=24>>24\n#### 24") == "48/2 = 24\nThe final answer is $\\boxed{24}$."


def _write(tmp_path, lines, name="pool.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def test_local_jsonl_field_mapping(tmp_path):
    rows = [
        {
            "q": "What is 1+1?",
            "gens": ["It is \\boxed{2}.", "So \\boxed{2}"],
            "think": "hmm",
            "final": "\\boxed{2}",
            "lvl": "Level 3",
            "yr": "1999",
        },
    ]
    path = _write(tmp_path, [json.dumps(r) for r in rows])
    fields = {
        "problem": "q",
        "answer": None,
        "solutions": {"long": "gens", "short": ["think", "final"]},
        "meta": {"level": "lvl", "year": "yr"},
    }
    (r,) = load_pool("local_jsonl", file=path, fields=fields)
    assert [s.kind for s in r.solutions] == ["long", "long", "short"]
    assert r.solutions[2].text == "hmm\n\n\\boxed{2}"
    assert r.answer == "2" and r.meta == {"source": "local_jsonl", "level": 3, "year": 1999}


@pytest.mark.parametrize(
    "bad, match",
    [
        ("{not json", r"pool.jsonl:3: bad JSON"),
        (
            json.dumps({"problem": 5, "answer": "1", "solution": "x"}),
            r"pool.jsonl:3: problem must be a non-empty string",
        ),
        (json.dumps({"problem": "p", "answer": ["1"], "solution": "x"}), r"pool.jsonl:3: answer must be"),
        (json.dumps({"problem": "p", "answer": "1", "solution": 7}), r"pool.jsonl:3: solutions.long"),
        (json.dumps([1, 2]), r"pool.jsonl:3: expected a JSON object"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad, match):
    good = json.dumps({"problem": "What is 2+2?", "answer": "4", "solution": "\\boxed{4}"})
    path = _write(tmp_path, [good, "", bad])  # blank lines are skipped but counted
    with pytest.raises(PoolFormatError, match=match):
        load_pool("local_jsonl", file=path)


def test_missing_mapped_column_names_key_and_columns(tmp_path):
    path = _write(tmp_path, [json.dumps({"question": "What is 2+2?", "answer": "4"})])
    with pytest.raises(PoolFormatError) as e:
        load_pool("local_jsonl", file=path)
    msg = str(e.value)
    assert "pool.jsonl:1" in msg and "fields.problem" in msg and "'problem'" in msg
    assert "['answer', 'question']" in msg


def test_json_array_errors(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('[{"problem": "x", "answer": "1", "solution": "s"},\n 3]')
    with pytest.raises(PoolFormatError, match=r"a.json record 1: expected a JSON object"):
        load_pool(
            "aime_historical",
            file=str(p),
            fields={"problem": "problem", "answer": "answer", "solutions": {"human": "solution"}},
        )
    p.write_text('[{"problem": "x",\n "answer": }]')
    with pytest.raises(PoolFormatError, match=r"a.json:2: bad JSON"):
        load_pool("aime_historical", file=str(p))


def test_unknown_pool_and_keys():
    with pytest.raises(ValueError, match="unknown pool 'nope'; valid pools: limo, limo_v2, s1k"):
        load_pool("nope")
    with pytest.raises(
        ConfigError, match=r"unknown config key pool.nn; valid keys of pool: \['name', 'hub_id'"
    ):
        PoolConfig.from_dict({"name": "synthetic", "nn": 3})
    with pytest.raises(ValueError, match="unknown field-mapping keys"):
        load_pool("local_jsonl", file="x.jsonl", fields={"problem": "p", "solution": "s"})
    with pytest.raises(ValueError, match="no hub copy"):
        load_pool("aime_historical")


def test_hub_pool_checks_columns(monkeypatch):
    class FakeDS(list):
        column_names: ClassVar[list[str]] = ["question", "solution", "answer"]

    calls = []

    def load_dataset(hub_id, config=None, split="train"):
        calls.append((hub_id, config, split))
        return FakeDS([{"question": "What is 3+4?", "solution": "Wait, 3+4 = \\boxed{7}", "answer": "7"}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    (r,) = load_pool("limo")
    assert calls == [("GAIR/LIMO", None, "train")] and r.answer == "7" and r.solutions[0].kind == "long"
    with pytest.raises(
        PoolFormatError,
        match=r"GAIR/LIMO-v2\[train\]: fields.problem maps to column 'problem', "
        r"not in columns \['question', 'solution', 'answer'\]",
    ):
        load_pool("limo_v2", fields={"problem": "problem", "solutions": {"long": "solution"}})


@pytest.mark.parametrize("name", POOL_NAMES)
def test_pool_yaml_matches_sources(name):
    cfg = yaml.safe_load((CONF / "pool" / f"{name}.yaml").read_text())
    assert cfg["name"] == name
    if name in ("synthetic", "arithmetic"):  # generated pools
        assert cfg == {"name": name, "n": 2000, "seed": 0}
        return
    if name == "distilled":  # limo-exp distill's own record files: no columns to map
        assert cfg == {"name": name, "file": "???", "n": None, "teacher": None}
        return
    if name == "mix":  # members, each a source of this table (tests/test_axes.py)
        assert cfg["data_dir"] is None and {m["pool"] for m in cfg["members"].values()} <= set(SOURCES)
        return
    src = SOURCES[name]
    assert cfg["data_dir"] is None
    assert (cfg["hub_id"], cfg["hub_config"], cfg["split"], cfg["file"]) == (
        src.hub_id,
        src.hub_config,
        src.split,
        src.file,
    )
    assert cfg["fields"] == dict(src.fields)


def _openr1_rows():
    """OpenR1-Math-220k rows in the hub's column types: generations and their flags are lists."""
    cols = ["problem", "answer", "generations", "correctness_math_verify", "is_reasoning_complete", "source"]
    cols += ["problem_type", "question_type"]
    rows = [
        {
            "problem": "What is 3+4?",
            "answer": "7",
            "generations": [
                "<think>3+4</think> \\boxed{7}",
                "<think>3+4=8</think> \\boxed{8}",
                "<think>3+4 is",
            ],
            "correctness_math_verify": [True, False, False],
            "is_reasoning_complete": [True, True, False],
            "source": "olympiads",
            "problem_type": "Algebra",
            "question_type": "math-word-problem",
        },
        {
            "problem": "What is 2+2?",
            "answer": "4",
            "generations": ["<think>2+2</think> \\boxed{5}"],
            "correctness_math_verify": [False],
            "is_reasoning_complete": [True],
            "source": "olympiads",
            "problem_type": "Algebra",
            "question_type": "math-word-problem",
        },
    ]

    class FakeDS(list):
        column_names: ClassVar[list[str]] = cols

    return FakeDS(rows)


def test_openr1_keeps_only_correct_and_complete_traces(monkeypatch):
    from limo_exp.config import CurationConfig
    from limo_exp.curation import curate

    monkeypatch.setitem(
        sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *a, **k: _openr1_rows())
    )
    recs = load_pool("openr1_math")
    assert [[s.text for s in r.solutions] for r in recs] == [["<think>3+4</think> \\boxed{7}"], []]
    assert [r.meta["solutions_dropped"] for r in recs] == [2, 1]
    off = {"verify": {"enabled": False}, "dedup": {"exact": False, "near": False}}
    funnel = curate(recs, CurationConfig.from_dict(off | {"decontam": {"enabled": False}}), {}).funnel
    assert funnel[0] == {"stage": "load", "in": 2, "out": 2, "solutions_dropped": 3}  # counted in the funnel

    fields = dict(SOURCES["openr1_math"].fields) | {"keep_if": []}  # the option that keeps them all
    assert [len(r.solutions) for r in load_pool("openr1_math", fields=fields)] == [3, 1]
    bad = _openr1_rows()
    bad[0]["is_reasoning_complete"] = [True]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *a, **k: bad))
    with pytest.raises(
        PoolFormatError, match="keep_if column 'is_reasoning_complete' must be a list of 3 flags"
    ):
        load_pool("openr1_math")


def test_the_arithmetic_family_is_its_own_pool_and_benchmark():
    """pool=arithmetic and limo_arithmetic: one- and two-step problems, pinned, disjoint splits,
    and the multistep family unchanged by the second one."""
    from limo_exp.data.benchmarks import load_benchmark
    from limo_exp.data.pools import load_pool
    from limo_exp.data.synthetic import make_pool

    pool = load_pool("arithmetic", n=50)
    assert [r.answer for r in pool[:4]] == ["2", "8", "30", "49"]
    assert {r.meta["subject"] for r in pool} == {"addition", "subtraction", "multiplication", "two_step"}
    assert pool[0].problem == "Liam has 11 cards and gives 9 away. How many cards does Liam have left?"
    assert [s.text for s in pool[0].solutions[:2]] == ["\\boxed{2}", "11 - 9 = 2.\nThe answer is \\boxed{2}."]
    items = load_benchmark("arithmetic", synthetic_n=64)
    assert len(items) == 64 and not {i.canonical_id for i in items} & {
        r.id for r in load_pool("arithmetic", n=2000)
    }
    assert make_pool(1)[0].id == "0360366d645d4f41"  # the multistep pool as before
