"""limo_exp.evaluation: sampling statistics on hand-made inputs, metric names, and every task
run end to end on 2 items with a tiny random model (CPU, offline)."""

from __future__ import annotations

import json
import math
import re

import pytest
from conftest import EVAL_DIR, needs_eval_data

from limo_exp.config import EvalConfig, SyntheticConfig
from limo_exp.evaluation.evaluate import EvalResult, evaluate
from limo_exp.evaluation.generation.backend import default_gen_kwargs
from limo_exp.evaluation.metrics import (
    majority_correct,
    mean_stderr,
    pass_at_k,
    sampling_metrics,
)
from limo_exp.evaluation.registry import check_tasks, groups, resolve_tasks, tasks
from limo_exp.tracking.names import metric_name, sampling_metric

TASKS = tasks()
PAPER_TASKS = groups()["limo_paper"]

MLFLOW_SAFE = re.compile(r"^[A-Za-z0-9_./ -]+$")


def _v(correct: bool, extracted: str | None = "x") -> dict:
    return {"correct": correct, "extracted": extracted, "status": "ok" if extracted else "no_answer"}


# ---------------------------------------------------------------- hand-made statistics


def test_pass_at_k_exact_values():
    assert pass_at_k(4, 2, 1) == pytest.approx(0.5)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert pass_at_k(4, 2, 3) == 1.0  # n - c < k
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))  # = 11/12
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_majority_vote():
    assert majority_correct([_v(True, "5"), _v(False, "4"), _v(True, "5")]) is True
    assert majority_correct([_v(False, "4"), _v(True, "5"), _v(False, "4")]) is False
    assert majority_correct([_v(False, "4"), _v(True, "5")]) is False  # tie: first seen wins
    assert majority_correct([_v(True, "5"), _v(False, "4")]) is True
    assert (
        majority_correct([_v(False, None), _v(False, None), _v(True, "5")]) is True
    )  # no-answers don't vote
    assert (
        majority_correct([_v(True, "x + 1"), _v(False, "2"), _v(True, "x+1")]) is True
    )  # whitespace-insensitive
    assert majority_correct([_v(False, None)]) is False
    # votes go by value, not spelling: two correct spellings of 1/2 beat one wrong 7
    assert majority_correct([_v(False, "7"), _v(True, "\\frac{1}{2}"), _v(True, "0.5")]) is True
    # and two spellings of the same wrong value beat one correct answer
    assert majority_correct([_v(True, "3"), _v(False, "\\frac{1}{2}"), _v(False, "0.5")]) is False


def test_mean_stderr():
    assert mean_stderr([1.0, 0.0, 1.0, 0.0]) == pytest.approx((0.5, math.sqrt((4 * 0.25 / 3) / 4)))
    assert mean_stderr([0.7]) == (0.7, 0.0)


def test_sampling_metrics_hand_made():
    q = [
        [_v(True, "1"), _v(True, "1"), _v(False, "2"), _v(True, "1")],  # c=3
        [_v(False, "7"), _v(False, None), _v(True, "3"), _v(False, "7")],  # c=1
    ]
    m = sampling_metrics(q, (1, 2, 8))
    assert m["mean_at_n"] == pytest.approx((0.75 + 0.25) / 2)
    assert m["mean_at_n_stderr"] == pytest.approx(0.25)  # std([.75,.25], ddof=1)=0.3536; /sqrt(2)
    assert m["pass_at_1"] == pytest.approx(0.5)
    assert m["pass_at_2"] == pytest.approx((1.0 + (1 - 3 / 6)) / 2)
    assert m["maj_at_1"] == pytest.approx(0.5)  # first samples: right, wrong
    assert m["maj_at_2"] == pytest.approx(0.5)  # q0 "1" x2; q1 only "7" votes
    assert "pass_at_8" not in m  # k > n is not reported


def test_metric_names_are_mlflow_safe():
    """The headline is <benchmark>/accuracy; other metrics eval/<task>/<metric>, a filter as a suffix."""
    assert metric_name("limo_math500", "exact_match,none") == "math500/accuracy"
    assert metric_name("limo_math500", "exact_match_stderr,none") == "math500/accuracy_stderr"
    assert metric_name("limo_aime24", "exact_match,flexible") == "eval/limo_aime24/exact_match/flexible"
    assert metric_name("limo_aime24", "maj@8,none") == "eval/limo_aime24/maj_at_8"
    assert metric_name("limo_aime24", "no_answer,none") == "eval/limo_aime24/no_answer"
    assert MLFLOW_SAFE.match(metric_name("t", "a:b@c,d"))


def test_copies_of_the_headline_are_not_named():
    """mean@n and pass@1 are the headline again; maj@1 too at one sample, not at several."""
    for copy in ("mean_at_n", "mean_at_n_stderr", "pass_at_1", "pass_at_1_stderr"):
        assert sampling_metric("limo_x", copy, 4) is None
    assert sampling_metric("limo_x", "maj_at_1", 1) is None
    assert sampling_metric("limo_x", "maj_at_1", 4) == "eval/limo_x/maj_at_1"
    assert sampling_metric("limo_x", "pass_at_2", 4) == "eval/limo_x/pass_at_2"


def test_default_gen_kwargs():
    assert default_gen_kwargs(100) == {
        "until": [],
        "max_gen_toks": 100,
        "do_sample": False,
        "temperature": 0.0,
    }
    assert default_gen_kwargs(100, 0.6, 0.95) == {
        "until": [],
        "max_gen_toks": 100,
        "do_sample": True,
        "temperature": 0.6,
        "top_p": 0.95,
    }


def test_unknown_task_fails_before_any_model_loads(tmp_path):
    with pytest.raises(ValueError) as err:
        evaluate(str(tmp_path / "no_model_here"), EvalConfig(tasks=["limo_math500", "aime24"]))
    assert "aime24" in str(err.value)
    for t in TASKS:
        assert t in str(err.value)
    with pytest.raises(ValueError):
        check_tasks([])


@needs_eval_data
def test_missing_data_file_fails_before_any_model_loads(tmp_path):
    with pytest.raises(FileNotFoundError, match="gpqa_diamond"):
        evaluate(
            str(tmp_path / "no_model_here"), EvalConfig(tasks=["limo_gpqa_diamond"], data_dir=str(EVAL_DIR))
        )


# ---------------------------------------------------------------- end to end with a tiny model


@needs_eval_data
def test_every_task_runs_on_two_items(tiny_model, eval_data_dir):
    suite = EvalConfig(
        tasks=["limo_paper", "limo_synthetic", "limo_arithmetic"],
        data_dir=str(eval_data_dir),
        limit=2,
        max_gen_toks=8,
        synthetic=SyntheticConfig(n=4),
    )
    result = evaluate(tiny_model, suite)
    assert isinstance(result, EvalResult)
    for task in TASKS:
        assert len(result.samples[task]) == 2
        bench = task.removeprefix("limo_")
        assert {f"{bench}/accuracy", f"{bench}/accuracy_stderr"} <= set(result.metrics), task
        for key in ("no_answer", "timeout", "n_samples", "n_no_answer", "n_truncated", "n_timeout"):
            assert f"eval/{task}/{key}" in result.metrics, (task, key)
        for copy in ("exact_match", "mean_at_n", "pass_at_1", "maj_at_1"):  # the headline, once
            assert f"eval/{task}/{copy}" not in result.metrics, (task, copy)
        s = result.samples[task][0]
        assert {"prompt", "response", "gold", "extracted", "status", "correct"} <= set(s)
        assert "<|im_start|>user" in s["prompt"]  # the chat template was applied
        assert "\\boxed{}" in s["prompt"]
    assert "paper/accuracy" in result.metrics  # the group's headline too
    assert list(result.metrics)[0].endswith("/accuracy")  # headlines first
    assert all(MLFLOW_SAFE.match(k) for k in result.metrics)
    assert all(isinstance(v, float) for v in result.metrics.values())
    st = result.settings
    assert all(isinstance(v, str) for v in st.values())
    for key in (
        "backend",
        "backend_version",
        "lm_eval_version",
        "chat_template_sha256",
        "grader_version",
        "math_verify_version",
        "gpqa_seed",
        "instruction",
        "system_prompt",
        "temperature",
        "top_p",
    ):
        assert key in st
    assert st["chat_template_sha256"] != "none"
    for task in PAPER_TASKS:
        assert st[f"data/{task}"].startswith("sha256:")
    json.dumps(result.raw)  # serialisable


def test_sampled_protocol_on_synthetic(tiny_model):
    suite = EvalConfig(
        tasks=["limo_synthetic"],
        limit=2,
        max_gen_toks=8,
        num_samples=3,
        temperature=1.0,
        top_p=0.9,
        pass_k=[1, 2, 3],
        synthetic=SyntheticConfig(n=3),
    )
    result = evaluate(tiny_model, suite, seed=1)
    rows = result.samples["limo_synthetic"]
    assert len(rows) == 2 * 3
    assert len({r["response"] for r in rows[:3]}) > 1  # sampling, not three greedy copies
    for key in ("pass_at_3", "maj_at_3", "maj_at_1"):  # maj@1 at 3 samples: the first sample's accuracy
        assert f"eval/limo_synthetic/{key}" in result.metrics
    assert "synthetic/accuracy" in result.metrics and "eval/limo_synthetic/mean_at_n" not in result.metrics
    first = list(rows[0])  # a samples line reads id, verdict, answer, gold, response first; the prompt last
    assert first[:7] == ["id", "sample", "correct", "status", "extracted", "gold", "response"]
    assert first[-1] == "prompt"
    assert result.settings["num_samples"] == "3"
    assert json.loads(result.settings["gen_kwargs"])["do_sample"] is True


@pytest.mark.parametrize("name", ["smoke", "demo", "limo_paper", "limo_paper_sampled", "s1_budget"])
def test_eval_configs_spell_out_the_schema(name):
    """Each conf/eval file sets every key of EvalConfig (no silent default) and parses."""
    import dataclasses

    from conftest import compose
    from omegaconf import OmegaConf

    from limo_exp.config import EvalConfig

    raw = OmegaConf.to_container(compose([f"eval={name}"]).eval, resolve=True)
    assert set(raw) == {f.name for f in dataclasses.fields(EvalConfig)}
    suite = EvalConfig.from_dict(raw, "eval")
    check_tasks(suite.tasks)
    leaves, _ = resolve_tasks(suite.tasks, None)
    assert max(suite.pass_k) <= min(suite.samples_for(t) for t in leaves)


def test_smoke_config_runs(tiny_model):
    from conftest import compose
    from omegaconf import OmegaConf

    from limo_exp.evaluation.tasks.utils import DEFAULT_INSTRUCTION

    cfg = OmegaConf.to_container(compose(["eval=smoke", "train.instruction=Box it."]).eval, resolve=True)
    suite = EvalConfig.from_dict(cfg | {"limit": 1, "max_gen_toks": 4}, "eval")
    assert suite.instruction == "Box it."  # the eval prompt follows the training prompt
    result = evaluate(tiny_model, suite)
    assert len(result.samples["limo_synthetic"]) == 1
    assert result.settings["synthetic"] == "n=8,seed=0"
    assert result.settings["instruction"] == "Box it." != DEFAULT_INSTRUCTION
    assert result.samples["limo_synthetic"][0]["prompt"].count("Box it.") == 1


def test_backend_auto_picks_hf_without_cuda(monkeypatch):
    import torch

    from limo_exp.evaluation.generation.backend import choose_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_backend("auto") == "hf"
    assert choose_backend("vllm") == "vllm"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object() if name == "vllm" else None)
    assert choose_backend("auto") == "vllm"
    with pytest.raises(ValueError, match="valid: auto, hf, vllm"):
        choose_backend("tgi")


def test_attn_implementation_selection(monkeypatch):
    import torch

    from limo_exp.training.models import attn_implementation, torch_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert attn_implementation("auto") == "sdpa" and torch_dtype("auto") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("limo_exp.training.attention.capability", lambda: (9, 0))
    monkeypatch.setattr("limo_exp.training.attention.flash_attn_missing", lambda: "")  # imports
    assert attn_implementation("auto") == "flash_attention_2" and torch_dtype("auto") == torch.bfloat16
    monkeypatch.setattr("limo_exp.training.attention.flash_attn_missing", lambda: "not installed")
    assert attn_implementation("auto") == "sdpa"
    assert attn_implementation("eager") == "eager"


def test_generation_budget_fits_the_context():
    from limo_exp.evaluation.generation.backend import fit_generation_budget

    assert fit_generation_budget(32768, 32768) == 30720  # LIMO's budget on Qwen2.5's 32k positions
    assert fit_generation_budget(32768, 4096) == 3072  # the tiny model
    assert fit_generation_budget(1024, 4096) == 1024  # fits: unchanged
    assert fit_generation_budget(32768, None) == 32768  # unknown context: left to the backend
