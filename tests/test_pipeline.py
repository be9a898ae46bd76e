"""`limo-exp run` end to end on the tiny model into a throwaway MLflow store, read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from limo_exp.config import ReportConfig, TrackingConfig


def _client(cfg):
    return MlflowClient(tracking_uri=cfg.tracking.uri)


def test_two_step_run_end_to_end(small_cfg, tmp_path):
    from limo_exp.commands.run import run

    cfg = small_cfg()
    out = run(cfg)
    assert not out["skipped"]
    client = _client(cfg)
    r = client.get_run(out["run_id"])
    assert r.info.status == "FINISHED"
    p = r.data.params
    assert p["data.n_samples"] == "8" and p["model.name"] == "tiny_random" and p["train.max_steps"] == "2"
    assert r.data.tags["limo.run_key"] == out["run_key"]
    for tag in (
        "git.commit",
        "git.dirty",
        "version.torch",
        "version.transformers",
        "version.lm-eval",
        "hardware.cpus",
    ):
        assert tag in r.data.tags
    m = r.data.metrics
    assert "train/tokens_per_s" in m and m["train/tokens_per_s"] > 0
    assert m["cost/train_tokens"] == m["train/seen_tokens"] > 0
    assert (
        m["cost/train_flops_est"] == 6.0 * 106816 * m["cost/train_tokens"]
    )  # tiny model: 106,816 parameters
    assert "cost/curation_seconds" in m and m["cost/device_hours"] > 0
    losses = client.get_metric_history(out["run_id"], "train/loss")
    assert [x.step for x in losses] == [1, 2]
    assert any(k.startswith("eval/limo_synthetic/") for k in m)
    arts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"config.yaml", "selected_ids.json", "curation", "eval"} <= arts
    ids = json.loads((tmp_path / "runs" / out["run_key"] / "selected_ids.json").read_text())
    assert ids == out["selected_ids"] and len(ids) == 8
    inputs = r.inputs.dataset_inputs
    assert {d.tags[0].value for d in inputs} == {"pool", "training", "evaluation"}  # + the benchmark

    # same config again: skipped, nothing recomputed; force=true reruns
    again = run(cfg)
    assert again["skipped"] and again["run_id"] == out["run_id"]
    cfg.force = True
    forced = run(cfg)
    assert not forced["skipped"] and forced["run_id"] != out["run_id"]
    assert forced["metrics"]["train/final_loss"] == m["train/final_loss"]  # same config, same numbers


def test_n_samples_beyond_pool_fails_before_model_load(small_cfg, monkeypatch):
    from limo_exp import training
    from limo_exp.commands.run import run
    from limo_exp.selection import NotEnoughRecords

    def boom(*a, **k):
        raise AssertionError("model loaded before the size check")

    monkeypatch.setattr(training, "resolve", boom)
    cfg = small_cfg("pool.n=20", "data.n_samples=50")
    with pytest.raises(NotEnoughRecords) as err:
        run(cfg)
    assert "50" in str(err.value) and "20" in str(err.value)
    runs = _client(cfg).search_runs([_client(cfg).get_experiment_by_name("test").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]  # a crashed run is marked FAILED


def test_unknown_task_lists_valid_ones(small_cfg):
    from limo_exp.commands.run import run

    with pytest.raises(ValueError) as err:
        run(small_cfg("eval.tasks=[limo_nope]"))
    assert "limo_nope" in str(err.value) and "limo_math500" in str(err.value)


def test_eval_only_baseline_and_report(small_cfg, tmp_path):
    """limo-exp eval logs a baseline run; limo-exp report turns the study into curve + table with run ids."""
    from limo_exp.analysis.report import report
    from limo_exp.commands.eval import run_eval
    from limo_exp.commands.run import run

    runs = [run(small_cfg(f"data.n_samples={n}")) for n in (4, 8)]
    base = run_eval(small_cfg())
    assert not base["skipped"] and "synthetic/accuracy" in base["metrics"]
    cfg = small_cfg()
    logged = _client(cfg).get_run(base["run_id"]).data
    assert logged.tags["limo.kind"] == "eval"  # a baseline is a kind of run, not a fake N
    assert "model.name" in logged.params and "data.n_samples" not in logged.params
    assert {_client(cfg).get_run(r["run_id"]).data.tags["limo.kind"] for r in runs} == {"run"}
    tracking = TrackingConfig.from_dict(OmegaConf.to_container(cfg.tracking, resolve=True))
    out = report(tracking, ReportConfig(n_boot=200, fit_boot=0), tmp_path / "results", tmp_path / "cache")
    assert out["runs"] == 3
    assert out["curve"].exists() and out["curve"].stat().st_size > 10_000
    table = out["table"].read_text()
    for r in runs + [base]:
        assert r["run_id"] in table and r["run_id"] in out["report"].read_text()  # rows trace to MLflow runs
    # every graded sample logged by the pipeline is read back, per problem, by canonical id
    rows = {r.n: r for r in out["rows"]}
    assert rows[0].cells["limo_synthetic"].mean == base["metrics"]["synthetic/accuracy"]
    # named by the labels the runs logged (model.label, quality.label), not by their ids
    assert (rows[0].label, rows[8].label) == ("tiny random Llama (untrained)", "long CoT")
    assert "2 value(s) of N: no fit" in out["report"].read_text()  # a 2-point curve is not fitted
    assert sorted(out["frame"]["data.n_samples"]) == [0, 4, 8]  # the baseline is N = 0
    assert sorted(out["frame"]["kind"]) == ["eval", "run", "run"]


def test_lora_recipe_runs_end_to_end(small_cfg):
    from limo_exp.commands.run import run

    cfg = small_cfg("train=lora", "train.max_steps=2", "train.batch_size=2", "train.max_length=256")
    out = run(cfg)
    m = _client(cfg).get_run(out["run_id"]).data.metrics
    assert 0 < m["train/trainable_fraction"] < 0.5  # r=16 on a 64-wide model: ~23%
    assert "synthetic/accuracy" in m


def test_run_trains_on_a_curated_real_pool(small_cfg, shared_data):
    """pool=gsm8k from ../shared/data: curated (funnel logged as metrics), N human solutions selected."""
    from limo_exp.commands.run import run

    cfg = small_cfg("pool=gsm8k", f"pool.data_dir={shared_data / 'pools'}", "+pool.n=300", "quality=human")
    out = run(cfg)
    r = _client(cfg).get_run(out["run_id"])
    assert r.data.metrics["curation/load_out"] == 300
    assert r.data.metrics["curation/quality_out"] <= 300
    assert r.data.params["pool.name"] == "gsm8k" and len(out["selected_ids"]) == 8
    arts = {a.path for a in _client(cfg).list_artifacts(out["run_id"], "curation")}
    assert arts == {"curation/curated_pool.ref.json", "curation/funnel.json", "curation/contamination.jsonl"}
    folder = Path(out["run_dir"]) / "curation"
    ref = json.loads((folder / "curated_pool.ref.json").read_text())
    assert not Path(ref["cache"]).is_absolute() and (folder / ref["cache"]).is_file()  # a relative path
    assert ref["records"] == r.data.metrics["curation/pool_size"]  # stored once


def test_report_never_averages_different_settings():
    import pandas as pd

    from limo_exp.analysis.study import setting_columns

    df = pd.DataFrame(
        {
            "kind": ["eval", "run", "run", "run", "run"],
            "data.n_samples": [0, 8, 8, 8, 16],
            "seed": ["0", "0", "1", "0", "0"],
            "train.lr": ["1e-5", "1e-5", "1e-5", "1e-4", "1e-5"],
            "quality.name": ["base", "short", "short", "short", "short"],
            "paths.output_root": ["a", "b", "c", "d", "e"],
            "synthetic/accuracy": [0.0, 0.1, 0.2, 0.3, 0.4],
        }
    )
    assert setting_columns(df) == ["train.lr"]  # seed, N, paths and the baseline row do not split curves


def test_an_example_over_the_token_budget_fails_before_the_model_loads(small_cfg, monkeypatch):
    from limo_exp import training
    from limo_exp.commands.run import run

    monkeypatch.setattr(
        training, "load_for_training", lambda *a: pytest.fail("model loaded before the check")
    )
    cfg = small_cfg("train.max_tokens_per_micro_batch=40")
    with pytest.raises(
        ValueError, match=r"example \w+ is \d+ tokens long, more than train.max_tokens_per_micro_batch=40"
    ):
        run(cfg)
    runs = _client(cfg).search_runs([_client(cfg).get_experiment_by_name("test").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
