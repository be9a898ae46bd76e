from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import torchrun

from limo_exp.cli import checkpoint_overrides


def test_checkpoint_path_becomes_local_path_model(tiny_model):
    args = checkpoint_overrides([f"model={tiny_model}", "eval=smoke"])
    assert args == ["model=local_path", f"model.path={tiny_model.resolve()}", "eval=smoke"]
    assert checkpoint_overrides(["model=tiny_random"]) == ["model=tiny_random"]  # a config name stays


def test_unknown_command_lists_the_valid_ones():
    proc = subprocess.run([sys.executable, "-m", "limo_exp", "train"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "valid: run, plan, curate, distill, eval, report, compare, regrade" in proc.stderr


def test_unknown_model_option_lists_the_valid_ones(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "limo_exp", "run", "model=gpt5", f"paths.output_root={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "Could not find 'model/gpt5'" in proc.stderr and "smollm2_135m_instruct" in proc.stderr


@pytest.mark.parametrize("command", ["run", "eval", "curate", "report"])
def test_a_config_error_is_one_line_naming_the_key(tmp_path, command):
    proc = subprocess.run(
        [sys.executable, "-m", "limo_exp", command, "+train.lrr=1e-5", f"paths.output_root={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert (
        "limo-exp: config error: unknown config key train.lrr; valid keys of train: ['name', 'lr',"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()


@pytest.mark.slow  # a two-run sweep in subprocesses, ~1 min: make test-slow (.ci/run runs it)
def test_multirun_makes_one_parent_and_a_relaunch_only_does_what_is_missing(tmp_path, cache_dir):
    from mlflow.tracking import MlflowClient

    def launch(values: str):
        cmd = [
            sys.executable,
            "-m",
            "limo_exp",
            "run",
            "--multirun",
            "debug=fast",
            f"data.n_samples={values}",
            f"paths.output_root={tmp_path}",
            f"paths.cache_dir={cache_dir}",
            "study=sweep",
            "pool.seed=123",  # a pool no other test curates: the first run of the sweep curates it
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    proc = launch("4,8")
    assert "plan: 2 points (2 to run, 0 already FINISHED, 0 will fail)" in proc.stdout  # before the jobs
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    exp = client.get_experiment_by_name("sweep").experiment_id
    runs = client.search_runs([exp])
    parents = [r for r in runs if r.data.tags.get("limo.kind") == "sweep"]
    children = [r for r in runs if "limo.run_key" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.data.params["data.n_samples"] for r in children) == ["4", "8"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {r.info.status for r in children} == {"FINISHED"}
    # curated once, by the sweep's plan before the first job: both runs find it in the cache
    assert [r.data.tags["limo.curation_from_cache"] for r in children] == ["true", "true"]

    parent = parents[0].data
    assert parents[0].info.run_name == "sweep · tiny_random · data.n_samples=4,8"  # study, model, axes
    assert parent.tags["limo.swept.data.n_samples"] == "4,8"
    assert parent.params["data.n_samples"] == "4,8"  # the swept axis with its values
    assert parent.params["pool.seed"] == "123"  # and the settings its children share
    assert sorted(r.info.run_name for r in children) == ["N=4 · s0", "N=8 · s0"]  # N, then what else varies
    assert {v for k, v in parent.tags.items() if k.startswith("limo.child.")} == {
        r.info.run_id for r in children
    }
    logged = {f.path for f in client.list_artifacts(parents[0].info.run_id, "plan")}
    assert logged == {"plan/plan.md", "plan/plan.json"}

    proc = launch("4,8,12")
    assert (
        "plan: 3 points (1 to run, 2 already FINISHED, 0 will fail)" in proc.stdout
    )  # relaunch with one more point: only n=12 runs
    children = [r for r in client.search_runs([exp]) if "limo.run_key" in r.data.tags]
    assert sorted(r.data.params["data.n_samples"] for r in children) == ["12", "4", "8"]
    new_parent = next(
        r
        for r in client.search_runs([exp])
        if r.data.tags.get("limo.kind") == "sweep" and r.info.run_id != parents[0].info.run_id
    )  # lists every child of the sweep, the two it reused included
    listed = {v for k, v in new_parent.data.tags.items() if k.startswith("limo.child.")}
    assert listed == {r.info.run_id for r in children}


@pytest.mark.slow  # subprocesses for tens of seconds: make test-slow (.ci/run runs it)
def test_two_process_run_logs_once_and_relaunch_skips_on_every_rank(tmp_path, cache_dir):
    """torchrun with 2 CPU processes (gloo): rank 0 tracks and evaluates; a relaunch skips on both ranks."""
    from mlflow.tracking import MlflowClient

    cmd = [
        *torchrun(2, 29547),
        "-m",
        "limo_exp",
        "run",
        "debug=fast",
        "train.batch_size=1",  # the global batch of 2: one sequence per process
        "train.checkpoint_every=1",  # states saved by both ranks
        f"paths.output_root={tmp_path}",
        f"paths.cache_dir={cache_dir}",
        "study=ddp",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert "synthetic/accuracy" in runs[0].data.metrics
    assert first.stdout.count("finished; run_key") == 1  # printed by rank 0 only
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipped (already FINISHED)" in again.stdout
    assert len(client.search_runs([client.get_experiment_by_name("ddp").experiment_id])) == 1
