"""No run lost or left dangling: a new store opened by several runs at once, a broken store,
secrets kept out of the store, bad input caught before any work, a real tracking server."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest
import services
from mlflow.tracking import MlflowClient

from limo_exp.config import ConfigError
from limo_exp.tracking.tracker import Tracker

OPEN_AND_LOG = """
import sys, time
from limo_exp.tracking.tracker import Tracker
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all three start at the same instant
t = Tracker(sys.argv[1], "race")
with t.run("r" + sys.argv[3]):
    t.log_metrics({"x": 1.0})
"""


@pytest.mark.slow  # subprocesses for tens of seconds: make test-slow (.ci/run runs it)
def test_three_runs_opening_a_new_store_at_once_all_finish(tmp_path):
    uri = f"sqlite:///{tmp_path}/new.db"
    start = time.time() + 8  # past the interpreters' start-up
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_LOG, uri, str(start), str(i)], stderr=subprocess.PIPE
        )
        for i in range(3)
    ]
    errors = [p.communicate(timeout=240)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(e[-1500:] for e in errors)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["r0", "r1", "r2"]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_a_broken_store_says_what_happened_and_how_to_recover(tmp_path):
    db = tmp_path / "broken.db"
    Tracker(f"sqlite:///{db}", "x")
    with sqlite3.connect(db) as con:  # what an interrupted schema upgrade leaves behind
        con.execute("UPDATE alembic_version SET version_num = 'deadbeef0000'")
        con.execute("CREATE TABLE _alembic_tmp_experiments (x INTEGER)")
    opener = f"from limo_exp.tracking.tracker import Tracker; Tracker('sqlite:///{db}', 'x')"
    proc = subprocess.run([sys.executable, "-c", opener], capture_output=True, text=True)  # a new process
    msg = proc.stderr
    assert proc.returncode == 1 and "Traceback" not in msg, msg[-2000:]
    assert f"the MLflow store {db} cannot be opened" in msg
    assert f"mlflow db upgrade sqlite:///{db}" in msg and f"mv {db} {db}.broken" in msg


def test_secrets_are_masked_in_params_and_tags(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    t = Tracker(uri, "s")
    with t.run("r", {"limo.server": "http://alice:hunter2pw@mlflow.example:5000"}):
        t.log_params({"tracking.uri": "https://bob:s3cretpw@host/x", "hub.hf_token": "hf_abcdefsecret"})
        t.set_tags({"pool.api_key": "key-123-secret"})
        run_id = t.run_id
    data = MlflowClient(uri).get_run(run_id).data
    assert data.params == {"tracking.uri": "https://***@host/x", "hub.hf_token": "***"}
    assert data.tags["limo.server"] == "http://***@mlflow.example:5000" and data.tags["pool.api_key"] == "***"
    raw = (tmp_path / "m.db").read_bytes()
    assert not any(s in raw for s in (b"hunter2pw", b"s3cretpw", b"hf_abcdefsecret", b"key-123-secret"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.n_samples=0", "data.n_samples=0: N must be >= 1"),
        ("data.n_samples=-1", "data.n_samples=-1: N must be >= 1"),
        ("eval.data_dir=/nowhere/eval", "eval.data_dir=/nowhere/eval is not a folder"),
    ],
)
def test_bad_input_fails_before_curation(small_cfg, tmp_path, override, message):
    from limo_exp.commands.run import run

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        run(small_cfg(override))
    assert not (tmp_path / "runs").exists()  # nothing was curated, trained or logged


def test_a_suite_with_no_runnable_task_fails_before_curation(small_cfg, tmp_path):
    from limo_exp.commands.run import run

    empty = tmp_path / "empty_eval"
    empty.mkdir()
    with pytest.raises(
        ConfigError, match=r"eval.tasks=\['limo_paper'\]: no task can run from eval.data_dir="
    ):
        run(small_cfg("eval=limo_paper", f"eval.data_dir={empty}"))
    assert not (tmp_path / "runs").exists()


def test_a_broken_benchmark_line_names_file_and_line(tmp_path):
    from limo_exp.data.benchmarks import load_benchmark

    good = '{"id": "1", "problem": "1+1?", "answer": "2"}\n'
    (tmp_path / "aime24.jsonl").write_text(good + "\n" + '{"id": "2", "problem": "cut' + "\n")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'aime24.jsonl'}:3: not a JSON line"):
        load_benchmark("aime24", tmp_path)


@pytest.mark.slow
def test_a_real_tracking_server(tmp_path, cache_dir):
    """A real `mlflow server` on 127.0.0.1 (its own SQLite store and artifact root): a 2-step run
    over HTTP with credentials in the URI, read back by the report; none of the password in the
    store or the run folder. A server that is down is a clear error before any training."""
    with services.mlflow_server(f"sqlite:///{tmp_path}/server.db", tmp_path / "art") as port:
        uri = f"http://limo:pa55word-xyz@127.0.0.1:{port}"
        env = {**os.environ, "LIMO_TRACKING_URI": uri}
        common = [
            "debug=fast",
            f"paths.output_root={tmp_path / 'out'}",
            f"paths.cache_dir={cache_dir}",
            "study=server",
        ]
        run = subprocess.run(
            [sys.executable, "-m", "limo_exp", "run", *common], env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert "pa55word" not in run.stdout + run.stderr  # MLflow's own "View run at" line included
        report = subprocess.run(
            [sys.executable, "-m", "limo_exp", "report", *common, f"paths.results_dir={tmp_path / 'res'}"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert report.returncode == 0, report.stderr[-3000:]
        assert "1 runs of study 'server'" in report.stdout and "pa55word" not in report.stdout
        for root in (tmp_path / "out", tmp_path / "art"):
            for f in (p for p in root.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000):
                assert b"pa55word-xyz" not in f.read_bytes(), f
        assert b"pa55word-xyz" not in (tmp_path / "server.db").read_bytes()
    down = subprocess.run(
        [sys.executable, "-m", "limo_exp", "run", *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert down.returncode == 1 and "cannot be used" in down.stderr and "Traceback" not in down.stderr
    assert not list((tmp_path / "out").glob("runs/*/state"))
