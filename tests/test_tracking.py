from __future__ import annotations

from pathlib import Path

import pytest

from limo_exp.tracking.names import safe_metric
from limo_exp.tracking.tracker import NullTracker, Tracker
from limo_exp.typed import flatten


def test_metric_names_mlflow_accepts():
    assert safe_metric("eval/limo_math500/exact_match,flexible") == "eval/limo_math500/exact_match/flexible"
    assert safe_metric("eval/limo_aime24/maj@64") == "eval/limo_aime24/maj_at_64"
    assert safe_metric("a:b") == "a_b"


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


def test_headline_names_and_older_stores_read_the_same():
    """One catalogue: the headline of a task, the map from older stores' names, what is a headline."""
    from limo_exp.tracking.names import (
        accuracies,
        accuracy,
        current_metric,
        current_metrics,
        regrade_accuracy,
    )

    assert (
        accuracy("limo_math500") == "math500/accuracy" and regrade_accuracy("limo_x") == "regrade/x/accuracy"
    )
    assert current_metric("eval/limo_math500/exact_match") == "math500/accuracy"
    assert current_metric("eval/limo_math500/exact_match_stderr") == "math500/accuracy_stderr"
    assert current_metric("regrade/limo_math500/exact_match") == "regrade/math500/accuracy"
    assert (
        current_metric("eval/limo_math500/exact_match/flexible") == "eval/limo_math500/exact_match/flexible"
    )
    assert current_metric("eval/limo_math500/no_answer") == "eval/limo_math500/no_answer"
    old = {"eval/limo_x/exact_match": 0.25, "eval/limo_x/no_answer": 0.5, "train/loss": 1.0}
    assert current_metrics(old) == {"x/accuracy": 0.25, "eval/limo_x/no_answer": 0.5, "train/loss": 1.0}
    assert (
        accuracies(old) == accuracies({"x/accuracy": 0.25, "x/accuracy_stderr": 0.1}) == {"x/accuracy": 0.25}
    )
    assert accuracies({"regrade/x/accuracy": 1.0}) == {}  # a regrade is not the run's headline


def test_runs_frame_reads_the_headline_from_old_and_new_stores(tmp_path):
    from limo_exp.config import TrackingConfig
    from limo_exp.tracking.runs import runs_frame

    uri = f"sqlite:///{tmp_path}/m.db"
    t = Tracker(uri, "study", str(tmp_path / "art"))
    for name, metrics in [
        ("old", {"eval/limo_synthetic/exact_match": 0.25, "eval/limo_synthetic/no_answer": 0.5}),
        ("new", {"synthetic/accuracy": 0.75, "eval/limo_synthetic/no_answer": 0.0}),
    ]:
        with t.run(name, {"limo.run_key": name, "limo.kind": "run"}):
            t.log_params({"data.n_samples": "8"})
            t.log_metrics(metrics)
    df = runs_frame(TrackingConfig(enabled=True, uri=uri, experiment="study")).set_index("run_name")
    assert dict(df["synthetic/accuracy"]) == {"old": 0.25, "new": 0.75}
    assert dict(df["eval/limo_synthetic/no_answer"]) == {"old": 0.5, "new": 0.0}
    assert "eval/limo_synthetic/exact_match" not in df.columns


def test_experiment_opens_on_the_training_view(tmp_path):
    """MLflow 3's UI reads the experiment tag mlflow.experimentKind: a new study gets it, and so does a
    study created before the tag the first time a run is written into it (not by a reader)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/m.db"
    Tracker(uri, "new", str(tmp_path / "art"))
    client = MlflowClient(uri)
    assert client.get_experiment_by_name("new").tags["mlflow.experimentKind"] == "custom_model_development"
    client.create_experiment("older")
    Tracker(uri, "older", create=False)
    assert "mlflow.experimentKind" not in client.get_experiment_by_name("older").tags
    Tracker(uri, "older")
    assert client.get_experiment_by_name("older").tags["mlflow.experimentKind"] == "custom_model_development"


def test_tracker_and_its_null_twin_follow_one_protocol():
    """Every method of RunTracker exists on Tracker and NullTracker with the same parameters
    (NullTracker.set_tags once lacked Tracker's run_id)."""
    import inspect

    from limo_exp.tracking.tracker import RunTracker

    methods = [m for m, f in vars(RunTracker).items() if callable(f) and not m.startswith("_")]
    assert {"set_tags", "log_metrics", "log_table", "log_dataset", "run"} <= set(methods)
    for m in methods:
        want = list(inspect.signature(getattr(RunTracker, m)).parameters)
        for cls in (Tracker, NullTracker):
            assert list(inspect.signature(getattr(cls, m)).parameters) == want, (cls.__name__, m)
    NullTracker().set_tags({"a": "b"}, run_id="elsewhere")  # a no-op, whatever the run


def test_run_names_and_params_lead_with_what_varies():
    from limo_exp.tracking.run_log import run_name, run_params
    from limo_exp.tracking.sweep_log import point_axes

    assert run_name("short", "random", 8, 0) == "N=8 · short · s0"
    assert run_name("L5", "tier", 100, 2) == "N=100 · L5 · tier · s2"
    axes = {"quality": "answer_only", "train.lr": "1e-5", "data.n_samples": "8", "seed": "1"}
    assert run_name("answer_only", "random", 8, 1, axes) == "N=8 · answer_only · lr=1e-5 · s1"
    params = {"report.n_boot": "1", "distill.n": "2", "train.lr": "1e-5", "pool.name": "p"}
    params |= {"quality.name": "short", "data.n_samples": "8", "quality.tier": "short"}
    assert list(run_params(params, ("train",))) == [
        "train.lr", "quality.name", "quality.tier", "data.n_samples", "pool.name"
    ]  # fmt: skip  # the swept axes, then the study's axes; other commands' settings left out
    assert point_axes(None, ["quality=short"]) == {}


def test_hub_loads_are_recorded_per_run(monkeypatch):
    from limo_exp.data import hub

    monkeypatch.setattr(hub, "model_commit", lambda repo, rev: f"sha-{repo}")
    monkeypatch.setattr(hub, "_LOADED", {})
    with hub.recording():
        hub.record_model("org/a", None)
        assert hub.as_tags(hub.loaded()) == {"limo.hub.org/a": "sha-org/a"}
    with hub.recording():
        hub.record_model("org/b", None)
        assert hub.as_tags(hub.loaded()) == {"limo.hub.org/b": "sha-org/b"}  # not org/a
    assert {e["repo"] for e in hub.loaded()} == {"org/a", "org/b"}  # outside a run: the process's


def _table(client, run_id: str, path: str) -> list[dict]:
    """An MLflow table artifact (log_table) as rows."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        t = json.loads(Path(client.download_artifacts(run_id, path, d)).read_text())
    return [dict(zip(t["columns"], row)) for row in t["data"]]


def test_a_sweep_reads_back_from_the_store(small_cfg, tmp_path, monkeypatch):
    """Two points of a sweep in one process (quality=short,answer_only at N=8), read back from the
    store: what MLflow's UI shows of them (issue 25)."""
    import json

    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from limo_exp import training
    from limo_exp.commands import run as run_cmd
    from limo_exp.commands.sweep import SweepCallback
    from limo_exp.data import hub

    sweep = tmp_path / "multirun"
    parent_cfg = small_cfg()
    OmegaConf.set_struct(parent_cfg, False)
    parent_cfg.hydra = {
        "sweep": {"dir": str(sweep)},
        "overrides": {"task": ["debug=fast", "quality=short,answer_only"]},
        "sweeper": {"params": None},
        "launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"},
    }
    callback = SweepCallback()
    callback.on_multirun_start(parent_cfg)
    monkeypatch.setattr(run_cmd, "sweep_dir", lambda: str(sweep))
    monkeypatch.setattr(hub, "model_commit", lambda repo, rev: "sha-first")
    resolve = training.resolve

    def reads_a_hub_model(model, cache):  # the first point reads a hub model's commit
        hub.record_model("org/only-first", None)
        return resolve(model, cache)

    out = {}
    for tier in ("short", "answer_only"):
        monkeypatch.setattr(run_cmd, "job_overrides", lambda t=tier: ["debug=fast", f"quality={t}"])
        monkeypatch.setattr(training, "resolve", reads_a_hub_model if tier == "short" else resolve)
        out[tier] = run_cmd.run(small_cfg(f"quality={tier}"))
    callback.on_multirun_end(parent_cfg)

    client = MlflowClient(parent_cfg.tracking.uri)
    exp = client.get_experiment_by_name("test")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the training view
    view = json.loads(exp.tags["mlflow.sharedViewState.limo"])  # ?viewStateShareKey=limo: its columns
    assert view["selectedColumns"] == [
        "metrics.`synthetic/accuracy`", "params.`quality.name`", "params.`data.n_samples`", "params.`seed`"
    ]  # fmt: skip
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {
        "test · tiny_random · quality=short,answer_only",
        "N=8 · short · s0",
        "N=8 · answer_only · s0",
    }
    parent = runs.pop("test · tiny_random · quality=short,answer_only")
    short, answer = runs["N=8 · short · s0"], runs["N=8 · answer_only · s0"]
    for r in (short, answer):
        assert r.data.tags["limo.model"] == "tiny_random" and r.data.params["model.name"] == "tiny_random"
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id

    # the parent: the swept axis with its values, the params all children share, none of one point's
    assert parent.data.tags["limo.sweep_dir"] == "multirun"  # relative to the output root
    p = parent.data.params
    assert p["quality"] == "short,answer_only" and not any(k.startswith("quality.") for k in p)
    assert p["data.n_samples"] == "8" == short.data.params["data.n_samples"]
    assert all(short.data.params[k] == answer.data.params[k] == v for k, v in p.items() if k != "quality")
    # and its summary: a table of its children, the best child's headline
    acc = {t: client.get_run(out[t]["run_id"]).data.metrics["synthetic/accuracy"] for t in out}
    rows = _table(client, parent.info.run_id, "sweep_summary.json")
    assert {(r["name"], r["run_id"], r["status"], r["synthetic/accuracy"]) for r in rows} == {
        ("N=8 · short · s0", short.info.run_id, "FINISHED", acc["short"]),
        ("N=8 · answer_only · s0", answer.info.run_id, "FINISHED", acc["answer_only"]),
    }
    assert parent.data.metrics == {"synthetic/accuracy": max(acc.values())}
    best = client.get_run(parent.info.run_id).data.tags["limo.best_run"]
    assert acc["short" if best == short.info.run_id else "answer_only"] == max(acc.values())

    for r in (short, answer):
        m, tags, key = r.data.metrics, r.data.tags, r.data.tags["limo.run_key"]
        # one headline per benchmark, not four copies of it
        assert {"synthetic/accuracy", "synthetic/accuracy_stderr"} <= set(m)
        for copy in ("exact_match", "mean_at_n", "pass_at_1", "maj_at_1"):
            assert f"eval/limo_synthetic/{copy}" not in m
        # params: no other command's settings; tags: none empty or placeholder, paths relative
        assert not any(k.startswith(("report.", "distill.")) for k in r.data.params)
        assert all(v.strip() for v in tags.values()) and "none" not in tags.get("limo.hydra_output_dir", "")
        assert tags["limo.run_dir"] == f"runs/{key}" and tags["eval.model_path"] == f"runs/{key}/checkpoint"
        assert tags["eval.data/limo_synthetic"] == "generated"
        assert not any(v.startswith(str(tmp_path)) for v in tags.values())
        # datasets: the pool, the texts trained on, the benchmark evaluated
        inputs = {d.tags[0].value: d.dataset for d in r.inputs.dataset_inputs}
        assert set(inputs) == {"pool", "training", "evaluation"}
        assert inputs["evaluation"].name == "eval/synthetic"

    # the training data: a digest over the texts each tier trained on, and its rows
    digests = {
        t: {d.tags[0].value: d.dataset.digest for d in client.get_run(out[t]["run_id"]).inputs.dataset_inputs}
        for t in out
    }
    assert digests["short"]["pool"] == digests["answer_only"]["pool"]
    assert digests["short"]["training"] != digests["answer_only"]["training"]
    trained = {t: _table(client, out[t]["run_id"], "training_rows.json") for t in out}
    assert [r["id"] for r in trained["short"]] == out["short"]["selected_ids"]
    assert {r["solution_kind"] for r in trained["answer_only"]} == {"answer_only"}
    assert {r["solution_kind"] for r in trained["short"]} == {"short"}
    assert trained["short"][0]["text"] != trained["answer_only"][0]["text"]
    assert list(trained["short"][0]) == ["id", "problem", "solution_kind", "text"]

    # samples: the verdict and the response first, the prompt last
    first = Path(out["short"]["run_dir"], "eval", "samples_limo_synthetic.jsonl").read_text().splitlines()[0]
    keys = list(json.loads(first))
    assert keys[:7] == ["id", "sample", "correct", "status", "extracted", "gold", "response"]
    assert keys[-1] == "prompt"

    # provenance per run: the hub model the first point read is not tagged on the second
    assert short.data.tags["limo.hub.org/only-first"] == "sha-first"
    assert "limo.hub.org/only-first" not in answer.data.tags


def test_the_plan_reads_a_baseline_accuracy_from_old_and_new_stores():
    from limo_exp.analysis.plan_figures import History
    from limo_exp.tracking.tracker import TrackedRun

    base, tuned = {"limo.kind": "eval"}, {"limo.kind": "run"}
    runs = [
        TrackedRun("a", tags=base, params={"model.name": "m"}, metrics={"eval/limo_x/exact_match": 0.25}),
        TrackedRun("b", tags=base, params={"model.name": "m"}, metrics={"x/accuracy": 0.5}),
        TrackedRun("c", tags=tuned, params={"model.name": "m"}, metrics={"x/accuracy": 0.9}),
    ]
    assert History.of(runs).accuracy == {("m", "limo_x"): [0.25, 0.5]}
