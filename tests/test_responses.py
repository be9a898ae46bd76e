"""Responses stored once (keyed by model weights, prompt, settings, sample), regraded without a
model, and s1's budget forcing checked from the generated token ids."""

from __future__ import annotations

import json
import logging

import pytest
from standin_engines import Thinking

from limo_exp.config import BudgetConfig, ConfigError, EvalConfig, SyntheticConfig
from limo_exp.evaluation import evaluate as ev_mod
from limo_exp.evaluation.evaluate import evaluate, evaluate_to_dir
from limo_exp.evaluation.generation.engines import sample_seed
from limo_exp.evaluation.regrade import regrade_dir
from limo_exp.evaluation.store import ResponseStore, Stored, StoreMismatch, model_fingerprint
from limo_exp.evaluation.stored_lm import Budget, StoredLM

SUITE = dict(tasks=["limo_synthetic"], limit=3, max_gen_toks=6, synthetic=SyntheticConfig(n=6), store="auto")


@pytest.fixture
def count_engines(monkeypatch):
    """How many times a generation engine (the model) is loaded."""
    loads = []
    real = ev_mod.make_engine

    def counting(*a, **kw):
        loads.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(ev_mod, "make_engine", counting)
    return loads


def test_second_evaluation_generates_nothing_and_loads_no_model(tiny_model, tmp_path, count_engines):
    first = evaluate(tiny_model, EvalConfig(**SUITE), store_dir=tmp_path)
    assert first.metrics["eval/responses_generated"] == 3 and len(count_engines) == 1
    again = evaluate(tiny_model, EvalConfig(**SUITE), store_dir=tmp_path)
    assert again.metrics["eval/responses_generated"] == 0
    assert again.metrics["eval/responses_from_store"] == 3
    assert len(count_engines) == 1  # served from the store: the model never loaded
    assert [r["response"] for r in again.samples["limo_synthetic"]] == [
        r["response"] for r in first.samples["limo_synthetic"]
    ]


def test_more_samples_and_a_new_benchmark_generate_only_what_is_missing(tiny_model, tmp_path, eval_data_dir):
    sampled = SUITE | {"temperature": 0.8, "top_p": 0.95, "pass_k": [1]}
    evaluate(tiny_model, EvalConfig(**sampled, num_samples=2), store_dir=tmp_path)
    more = evaluate(tiny_model, EvalConfig(**sampled, num_samples=3), store_dir=tmp_path)
    assert more.metrics["eval/responses_generated"] == 3  # the third sample of 3 questions
    assert more.metrics["eval/responses_from_store"] == 6
    added = sampled | {"tasks": ["limo_synthetic", "limo_aime24"], "data_dir": str(eval_data_dir)}
    both = evaluate(
        tiny_model, EvalConfig(**added, num_samples={"limo_aime24": 1, "default": 3}), store_dir=tmp_path
    )
    assert both.metrics["eval/responses_generated"] == 3  # AIME only
    assert len(both.samples["limo_aime24"]) == 3 and len(both.samples["limo_synthetic"]) == 9


def test_store_of_another_model_and_a_line_cut_short(tiny_model, tmp_path, caplog):
    fp = model_fingerprint(str(tiny_model))
    evaluate(tiny_model, EvalConfig(**SUITE), store_dir=tmp_path)
    path = tmp_path / f"{fp}.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # killed mid-write
    with caplog.at_level(logging.WARNING):
        again = evaluate(tiny_model, EvalConfig(**SUITE), store_dir=tmp_path)
    assert f"{path}: line(s) 3 unreadable" in caplog.text
    assert again.metrics["eval/responses_generated"] == 1 and again.metrics["eval/responses_from_store"] == 2
    assert len(path.read_text().splitlines()) == 3  # the good lines kept, the lost sample regenerated
    other = tmp_path / "other"
    other.mkdir()
    (other / f"{fp}.jsonl").write_text(path.read_text().replace(fp, "0123456789abcdef"))
    with pytest.raises(StoreMismatch, match="holds a response of model 0123456789abcdef, not of " + fp):
        ResponseStore(other, fp)


def test_lengths_truncation_and_regrade(tiny_model, tmp_path):
    """A random model never finishes in 6 tokens: every response is truncated, graded no answer;
    regrading the stored samples needs no model and changes nothing."""
    res = evaluate_to_dir(tiny_model, EvalConfig(**SUITE), tmp_path / "eval", store_dir=tmp_path / "store")
    m = res.metrics
    assert m["eval/limo_synthetic/truncated"] == 1.0 and m["eval/limo_synthetic/no_answer"] == 1.0
    assert m["eval/limo_synthetic/response_tokens_mean"] == 6.0
    assert m["eval/limo_synthetic/response_tokens_median"] == 6.0
    assert m["eval/limo_synthetic/gen_tokens_per_s"] > 0
    rows = [
        json.loads(x) for x in (tmp_path / "eval" / "samples_limo_synthetic.jsonl").read_text().splitlines()
    ]
    assert {r["status"] for r in rows} == {"truncated"} and {r["n_tokens"] for r in rows} == {6}
    assert len((tmp_path / "eval" / "responses.jsonl").read_text().splitlines()) == 3
    # regrade: an edited response is re-scored with the current grader
    rows[0] |= {"status": "ok", "finish": "stop", "response": "so \\boxed{" + rows[0]["gold"][0] + "}"}
    (tmp_path / "eval" / "samples_limo_synthetic.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    summary = regrade_dir(tmp_path / "eval")
    s = summary["tasks"]["limo_synthetic"]
    assert (s["accuracy_before"], s["accuracy_after"], len(s["changed"])) == (0.0, 1 / 3, 1)
    assert (tmp_path / "eval" / "regraded" / "samples_limo_synthetic.jsonl").exists()


def test_budget_forcing_on_the_tiny_model_counts_real_tokens(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    budget = BudgetConfig(think_max=5, answer_max=3)
    suite = EvalConfig(**SUITE | {"max_gen_toks": 8, "budget": budget})
    res = evaluate(tiny_model, suite, store_dir=tmp_path)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for row in res.samples["limo_synthetic"]:
        think, _, answer = row["response"].partition("</think>\nFinal Answer:")
        assert answer is not None and "</think>\nFinal Answer:" in row["response"]  # the forced strings
        assert row["think_tokens"] == 5  # a random model never ends its thinking: forced at the budget
        assert len(tok(think, add_special_tokens=False)["input_ids"]) <= 6  # re-encoding may merge
        assert row["n_tokens"] == 5 + 3 and row["status"] == "truncated"  # the answer ran out too


def test_budget_forcing_appends_wait_until_the_minimum():
    eng = Thinking()
    store = ResponseStore.__new__(ResponseStore)
    store.model_fp, store.records, store.hits, store.added, store.path = "fp", {}, 0, 0, None
    store.add = lambda items: store.records.update(items)
    b = Budget(think_max=100, think_min=5, max_waits=2, answer_max=3)
    lm = StoredLM("m", tokenizer=None, store=store, engine_factory=lambda: eng, budget=b)
    s = {"until": [], "temperature": 0.0, "top_p": 1.0, "max_gen_toks": 200, "budget": None}
    (out,) = lm._forced([("k", "t", 0, 0, "PROMPT", s)])
    assert out.response == " hmWait hmWait hm</think>\nFinal Answer:x"
    assert (out.think_tokens, out.waits, out.forced, out.n_tokens) == (6, 2, False, 7)
    # each thinking round asks only for what is left of the budget and stops at the delimiter
    assert [c[0].max_new for c in eng.calls[:3]] == [100, 98, 96] and eng.calls[0][0].stop == ("</think>",)
    assert eng.calls[3][0].max_new == 3
    # each round its own seed (the first: the sample's own), or every round replays round 1's noise
    assert [c[0].seed for c in eng.calls] == [sample_seed("k")] + [
        sample_seed(f"k|round {r}") for r in (1, 2, 3)
    ]


def test_bad_protocols_fail_before_the_model_loads(tiny_model, tmp_path, count_engines):
    with pytest.raises(ConfigError, match="eval.num_samples names \\['limo_aime99'\\], which this package"):
        evaluate(tiny_model, EvalConfig(**SUITE | {"num_samples": {"limo_aime99": 4, "default": 1}}))
    with pytest.raises(ValueError, match="leave no room for a prompt in the model's 4096 positions"):
        big = BudgetConfig(think_max=4000, answer_max=100)
        evaluate(tiny_model, EvalConfig(**SUITE | {"max_gen_toks": 8000, "budget": big}))
    with pytest.raises(ConfigError, match="exceeds eval.max_gen_toks=6"):
        EvalConfig(**SUITE | {"budget": BudgetConfig(think_max=5, answer_max=3)})
    with pytest.raises(ConfigError, match="unknown config key eval.budget.think_maxx"):
        EvalConfig.from_dict({"budget": {"think_maxx": 3}}, "eval")
    assert count_engines == []
    assert Stored("a", 1, "stop").finish == "stop"


def test_regrade_command_needs_no_model(tmp_path):
    import subprocess
    import sys

    rows = [
        {
            "id": "a",
            "sample": 0,
            "gold": ["1/2"],
            "kind": "math",
            "response": "\\boxed{0.5}",
            "correct": False,
        },
        {"id": "b", "sample": 0, "gold": ["B"], "kind": "choice", "response": "Answer: B", "correct": True},
        {
            "id": "c",
            "sample": 0,
            "gold": ["3"],
            "kind": "math",
            "response": "\\boxed{3",
            "status": "truncated",
        },
    ]
    (tmp_path / "samples_limo_x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "limo_exp", "regrade", str(tmp_path), "tracking=disabled"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "limo_x: 3 samples, accuracy 0.333 -> 0.667, 1 verdict(s) changed" in out.stdout
    bad = subprocess.run(cmd[:4] + [str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert (
        bad.returncode == 1
        and "is neither a folder nor a run id" in bad.stderr
        and "Traceback" not in bad.stderr
    )
