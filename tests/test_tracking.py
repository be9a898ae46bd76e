from __future__ import annotations

import pytest

from limo_exp.tracking.names import metric_name
from limo_exp.tracking.tracker import NullTracker, Tracker
from limo_exp.typed import flatten


def test_metric_names_mlflow_accepts():
    assert metric_name("eval/limo_math500/exact_match,flexible") == "eval/limo_math500/exact_match/flexible"
    assert metric_name("eval/limo_aime24/maj@64") == "eval/limo_aime24/maj_at_64"
    assert metric_name("a:b") == "a_b"


def test_flatten():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]", "d": "None"}


def test_crash_marks_run_failed(tmp_path):
    t = Tracker(f"sqlite:///{tmp_path}/m.db", "x", str(tmp_path / "art"))
    with pytest.raises(RuntimeError), t.run("boom"):
        raise RuntimeError("crash")
    assert t.client.get_run(t.run_id).info.status == "FAILED"
    with t.run("ok", {"limo.run_key": "k1"}):
        t.log_metrics({"eval/x/exact_match,none": 0.5}, step=1)
    assert t.client.get_run(t.run_id).data.metrics == {"eval/x/exact_match/none": 0.5}
    assert t.find_finished("k1").run_id == t.run_id
    assert t.find_finished("k2") is None


def test_null_tracker_is_a_noop():
    t = NullTracker()
    with t.run("x") as r:
        r.log_metrics({"a": 1.0})
    assert t.find_finished("k") is None


def test_runs_frame_reads_kinds_including_older_stores(tmp_path):
    """Kinds come from the limo.kind tag; stores written before it (no tag: a training run;
    eval_only: a baseline) read the same; sweep parents and unkeyed runs are left out."""
    from limo_exp.config import TrackingConfig
    from limo_exp.tracking.runs import runs_frame

    uri = f"sqlite:///{tmp_path}/m.db"
    t = Tracker(uri, "study", str(tmp_path / "art"))
    for name, tags, params in [
        ("new-run", {"limo.run_key": "a", "limo.kind": "run"}, {"data.n_samples": "8"}),
        ("old-run", {"limo.run_key": "b"}, {"data.n_samples": "16"}),
        ("new-eval", {"limo.run_key": "c", "limo.kind": "eval"}, {"model.name": "m"}),
        ("old-eval", {"limo.run_key": "d", "limo.kind": "eval_only"}, {"data.n_samples": "0"}),
        ("sweep", {"limo.kind": "sweep"}, {}),
    ]:
        with t.run(name, tags):
            t.log_params(params)
    df = runs_frame(TrackingConfig(enabled=True, uri=uri, experiment="study")).set_index("run_name")
    assert dict(df["kind"]) == {"new-run": "run", "old-run": "run", "new-eval": "eval", "old-eval": "eval"}
    assert dict(df["data.n_samples"]) == {"new-run": 8, "old-run": 16, "new-eval": 0, "old-eval": 0}
    with pytest.raises(SystemExit, match="no MLflow experiment 'other'"):
        runs_frame(TrackingConfig(enabled=True, uri=uri, experiment="other"))


def test_mfu_needs_a_known_device():
    from limo_exp.tracking.run_log import model_flops_utilisation

    # 1.5B parameters, 10,000 tokens/s on one H100: 6 * 1.5e9 * 1e4 / 989e12 = 9.1%
    mfu = model_flops_utilisation(1_500_000_000, 100_000, 10.0, 1, "NVIDIA H100 80GB HBM3")
    assert mfu == pytest.approx(0.0910, abs=1e-4)
    assert model_flops_utilisation(1_500_000_000, 100_000, 10.0, 8, "NVIDIA H200") == pytest.approx(mfu / 8)
    assert model_flops_utilisation(1_500_000_000, 100_000, 10.0, 1, "cpu") is None


def test_mlflow_conventions_sources_system_metrics_and_model(tmp_path):
    """Standard mlflow.* tags, dataset sources (hub at a commit, a file, a generator), system
    metrics sampled while the run lives, and the checkpoint folder logged as the run's model."""
    import time

    from mlflow.tracking import MlflowClient

    from limo_exp.tracking.run_log import run_tags

    uri = f"sqlite:///{tmp_path}/m.db"
    t = Tracker(uri, "conv", str(tmp_path / "art"), system_metrics=0.2)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    origins = [
        {"kind": "hub", "hub_id": "GAIR/LIMO", "config": None, "split": "train", "revision": "abc123"},
        {"kind": "file", "path": str(tmp_path / "pool.jsonl")},
        {
            "kind": "generated",
            "generator": "limo_exp.data.synthetic",
            "family": "arithmetic",
            "n": 8,
            "seed": 0,
        },
    ]
    with t.run("r", run_tags("k" * 20, "run")):
        for i, origin in enumerate(origins):
            t.log_dataset([{"id": str(i)}], f"pool/{i}", f"d{i}", "pool", origin)
        t.log_model(ckpt, "folder")
        time.sleep(1.0)
        run_id = t.run_id
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    tags = run.data.tags
    assert (
        tags["mlflow.source.git.commit"] == tags["git.commit"]
        and tags["mlflow.source.name"] == "limo-exp run"
    )
    assert tags["mlflow.user"] and tags["mlflow.source.type"] == "LOCAL"
    sources = {d.dataset.name: (d.dataset.source_type, d.dataset.source) for d in run.inputs.dataset_inputs}
    assert sources["pool/0"][0] == "hugging_face" and '"revision": "abc123"' in sources["pool/0"][1]
    assert str(tmp_path / "pool.jsonl") in sources["pool/1"][1]
    assert sources["pool/2"][0] == "code" and "arithmetic" in sources["pool/2"][1]
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics)
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/config.json"]
