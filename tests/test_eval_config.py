"""The evaluation's config as a user meets it (issue 31, item 9): one rule for a missing benchmark
file in every protocol, a protocol's per-task settings following ``eval.tasks``, all of it checked
before any model is fetched or converted, and counts that say what they count."""

from __future__ import annotations

import logging

import pytest
from conftest import EVAL_DIR, GPQA_FILE, compose, needs_eval_data

from limo_exp.commands.common import parse
from limo_exp.commands.prepare import check_eval
from limo_exp.config import ConfigError, EvalConfig
from limo_exp.evaluation import registry

PROTOCOLS_WITH_GPQA = ["limo_paper", "limo_paper_sampled", "s1_budget"]


def _spec(*overrides: str):
    return parse(compose(list(overrides)))


@pytest.fixture
def without_gpqa(tmp_path):
    """The shared benchmark files, linked into a folder that has no GPQA file (as ../shared has)."""
    d = tmp_path / "eval"
    d.mkdir()
    for f in EVAL_DIR.glob("*.jsonl"):
        (d / f.name).symlink_to(f)
    assert not (d / "gpqa_diamond.jsonl").exists()
    return d


# ---------------------------------------------------------------- one rule for a missing file


@needs_eval_data
@pytest.mark.parametrize("protocol", PROTOCOLS_WITH_GPQA)
def test_a_protocol_skips_a_missing_member_with_a_warning_naming_the_file(protocol, without_gpqa, caplog):
    spec = _spec(f"eval={protocol}", f"eval.data_dir={without_gpqa}")
    with caplog.at_level(logging.WARNING):
        kept = check_eval(spec)
    assert "limo_gpqa_diamond" not in kept and "limo_aime24" in kept
    warned = [r.getMessage() for r in caplog.records if "limo_gpqa_diamond" in r.getMessage()]
    assert len(warned) == 1
    assert str(without_gpqa / "gpqa_diamond.jsonl") in warned[0]  # the file, and how to supply it
    assert "eval.data_dir=null" in warned[0] and "Idavidrein/gpqa" in warned[0]


@needs_eval_data
@pytest.mark.parametrize("protocol", PROTOCOLS_WITH_GPQA)
def test_a_task_named_in_eval_tasks_without_its_file_is_an_error(protocol, without_gpqa):
    spec = _spec(
        f"eval={protocol}", f"eval.data_dir={without_gpqa}", "eval.tasks=[limo_aime24,limo_gpqa_diamond]"
    )
    with pytest.raises(registry.MissingBenchmark) as err:
        check_eval(spec)
    assert isinstance(err.value, ConfigError) and isinstance(err.value, FileNotFoundError)
    assert "limo_gpqa_diamond is named in eval.tasks" in str(err.value)
    assert str(without_gpqa / "gpqa_diamond.jsonl") in str(err.value)


@needs_eval_data
def test_a_benchmark_of_two_files_names_the_one_missing(without_gpqa):
    (without_gpqa / "aime25_II.jsonl").unlink()
    with pytest.raises(registry.MissingBenchmark) as err:
        check_eval(_spec("eval=limo_paper", f"eval.data_dir={without_gpqa}", "eval.tasks=[limo_aime25]"))
    assert f"no local file {without_gpqa / 'aime25_II.jsonl'}: put it there" in str(err.value)


@needs_eval_data
def test_the_sampled_protocol_runs_gpqa_when_its_file_is_there(without_gpqa):
    (without_gpqa / GPQA_FILE.name).symlink_to(GPQA_FILE)
    kept = check_eval(_spec("eval=limo_paper_sampled", f"eval.data_dir={without_gpqa}"))
    assert kept == ["limo_aime24", "limo_aime25", "limo_amc23", "limo_math500", "limo_gpqa_diamond"]


# ---------------------------------------------------------------- per-task settings follow eval.tasks


def test_narrowing_the_sampled_protocol_drops_the_other_tasks_settings(caplog):
    spec = _spec("eval=limo_paper_sampled", "eval.tasks=[limo_aime24,limo_math500]")
    with caplog.at_level(logging.INFO, logger="limo_exp.evaluation.registry"):
        assert check_eval(spec) == ["limo_aime24", "limo_math500"]
    assert spec.config.eval.num_samples == {"limo_aime24": 64, "limo_math500": 4}
    assert spec.resolved["eval"]["num_samples"] == {"limo_aime24": 64, "limo_math500": 4}  # key and params
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(
        "eval.num_samples: dropped the entries of limo_aime25, limo_amc23, limo_gpqa_diamond" in m
        for m in info
    )

    # the key is that of the same settings spelled out (the old workaround: ~eval.num_samples.<task>)
    spelled = _spec(
        "eval=limo_paper_sampled",
        "eval.tasks=[limo_aime24,limo_math500]",
        "~eval.num_samples.limo_aime25",
        "~eval.num_samples.limo_amc23",
        "~eval.num_samples.limo_gpqa_diamond",
    )
    check_eval(spelled)
    assert spec.key("pool", "bench") == spelled.key("pool", "bench")
    assert (
        spec.params()["eval.num_samples.limo_aime24"] == "64"
        and "eval.num_samples.limo_amc23" not in spec.params()
    )


def test_an_override_of_num_samples_merges_then_follows_eval_tasks():
    spec = _spec(
        "eval=limo_paper_sampled",
        "eval.tasks=[limo_aime24,limo_math500]",
        "eval.num_samples={limo_aime24: 8}",
    )
    check_eval(spec)
    assert spec.config.eval.num_samples == {"limo_aime24": 8, "limo_math500": 4}


def test_the_whole_protocol_keeps_its_settings_and_its_run_key():
    spec = _spec("eval=limo_paper_sampled")
    before = spec.key("pool", "bench")
    check_eval(spec)
    assert spec.key("pool", "bench") == before
    assert spec.config.eval.num_samples == {
        "limo_aime24": 64,
        "limo_aime25": 64,
        "limo_amc23": 16,
        "limo_math500": 4,
        "limo_gpqa_diamond": 8,
    }


def test_per_task_settings_that_name_no_task_are_errors():
    with pytest.raises(ConfigError, match=r"eval.num_samples names \['limo_aime42'\]"):
        check_eval(_spec("eval=limo_paper_sampled", "+eval.num_samples.limo_aime42=4"))
    with pytest.raises(ConfigError, match=r"eval.revision names \['aime42'\]"):
        check_eval(_spec("eval=limo_paper_sampled", "eval.revision={aime42: main}"))
    with pytest.raises(ConfigError, match="no entry for limo_olympiadbench and no default"):
        check_eval(_spec("eval=limo_paper_sampled", "eval.tasks=[limo_olympiadbench]"))


def test_revision_entries_follow_eval_tasks_too():
    spec = _spec("eval=limo_paper", "eval.tasks=[limo_math500]", "eval.revision={math500: abc, aime24: def}")
    check_eval(spec)
    assert spec.config.eval.revision == {"math500": "abc"}


# ---------------------------------------------------------------- checked before any model is fetched


@pytest.fixture
def no_model_fetch(monkeypatch):
    """Every way a model is fetched or converted raises, and is counted."""
    from limo_exp import training
    from limo_exp.training import models

    fetched: list[str] = []

    def fetch(*args, **kwargs):
        fetched.append("model")
        raise AssertionError("a model was fetched before the evaluation's config was checked")

    monkeypatch.setattr(training, "resolve", fetch)
    monkeypatch.setattr(models, "resolve", fetch)
    monkeypatch.setattr(models, "convert_gguf_wheel", fetch)
    return fetched


def _user_cfg(tmp_path, data_dir, *extra: str):
    return compose(
        [
            "model=smollm2_135m_instruct",
            "eval=limo_paper_sampled",
            f"eval.data_dir={data_dir}",
            "eval.limit=2",
            "tracking=disabled",
            f"paths.output_root={tmp_path}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            *extra,
        ]
    )


@needs_eval_data
@pytest.mark.parametrize(
    "extra, error",
    [
        (["eval.tasks=[limo_aime24,limo_gpqa_diamond]"], "limo_gpqa_diamond is named in eval.tasks"),
        (["+eval.num_samples.limo_aime42=4"], r"eval.num_samples names \['limo_aime42'\]"),
        (["eval.tasks=[limo_olympiadbench]"], "no entry for limo_olympiadbench"),
    ],
)
def test_limo_exp_eval_checks_before_any_model_is_fetched(
    extra, error, tmp_path, without_gpqa, no_model_fetch
):
    from limo_exp.commands.eval import run_eval

    with pytest.raises(ConfigError, match=error):
        run_eval(_user_cfg(tmp_path, without_gpqa, *extra))
    assert no_model_fetch == []


@needs_eval_data
def test_limo_exp_run_checks_before_any_model_is_fetched(tmp_path, without_gpqa, no_model_fetch):
    from limo_exp.commands.run import run

    with pytest.raises(ConfigError, match=r"eval.num_samples names \['limo_aime42'\]"):
        run(_user_cfg(tmp_path, without_gpqa, "+eval.num_samples.limo_aime42=4"))
    assert no_model_fetch == []


@needs_eval_data
def test_the_users_narrowed_command_gets_past_the_check_to_the_model(tmp_path, without_gpqa, no_model_fetch):
    """``limo-exp eval model=smollm2_135m_instruct eval=limo_paper_sampled eval.data_dir=... eval.limit=2``
    narrowed to two tasks: nothing stops it before the model is fetched (here: the stand-in fetch)."""
    from limo_exp.commands.eval import run_eval

    with pytest.raises(AssertionError, match="a model was fetched"):
        run_eval(_user_cfg(tmp_path, without_gpqa, "eval.tasks=[limo_aime24,limo_math500]"))
    assert no_model_fetch == ["model"]


# ---------------------------------------------------------------- counts that say what they count


def test_answer_counts_count_what_the_shares_average():
    from limo_exp.evaluation.metrics import answer_counts

    rows = [{"status": s} for s in ("ok", "no_answer", "truncated", "timeout", "truncated", "ok")]
    assert answer_counts("limo_x", rows) == {
        "eval/limo_x/n_samples": 6.0,
        "eval/limo_x/n_no_answer": 3.0,  # the two truncated ones included, as in the share no_answer
        "eval/limo_x/n_truncated": 2.0,
        "eval/limo_x/n_timeout": 1.0,
    }


@needs_eval_data
def test_the_sampled_group_evaluates_without_gpqa_and_its_counts_agree_with_its_shares(
    tiny_model, without_gpqa
):
    """The tiny model never ends in 4 tokens: every response is truncated, so the share without an
    answer is 1.0 and so is the count (today's ``no_answer 1.0`` beside ``no_answer_count 0``)."""
    from limo_exp.evaluation.evaluate import evaluate

    suite = EvalConfig(
        tasks=["limo_sampled"],
        data_dir=str(without_gpqa),
        limit=1,
        max_gen_toks=4,
        num_samples={"limo_aime24": 2, "limo_gpqa_diamond": 8, "default": 1},
        store="off",
    )
    result = evaluate(str(tiny_model), suite)
    assert sorted(result.samples) == ["limo_aime24", "limo_aime25", "limo_amc23", "limo_math500"]
    assert "limo_gpqa_diamond: no local file" in result.settings["skipped_tasks"]
    m = result.metrics
    assert m["eval/limo_aime24/n_samples"] == 2.0 and m["eval/limo_math500/n_samples"] == 1.0
    for task in result.samples:
        n = m[f"eval/{task}/n_samples"]
        assert m[f"eval/{task}/no_answer"] == 1.0 and m[f"eval/{task}/truncated"] == 1.0
        assert m[f"eval/{task}/n_no_answer"] == m[f"eval/{task}/n_truncated"] == n
        assert f"eval/{task}/no_answer_count" not in m
