"""A killed run resumes from its last saved state and ends where an uninterrupted run would; no
MLflow run is left RUNNING."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from limo_exp.config import TrainConfig
from limo_exp.training import checkpoints


class Stop(Exception):
    pass


def _train(tiny_model, state_dir, stop_at: int | None = None, **kw):
    from accelerate import Accelerator

    from limo_exp.data.records import Example
    from limo_exp.data.synthetic import make_pool
    from limo_exp.training.loop import train
    from limo_exp.training.models import load

    torch.manual_seed(0)
    model, tok = load(str(tiny_model))
    examples = [
        Example(r.id, r.problem, r.solutions[1].text, r.answer, "short") for r in make_pool(8, seed=0)
    ]
    cfg = TrainConfig(lr=1e-3, max_steps=6, batch_size=2, warmup_ratio=0.2, **kw)
    logged = []

    def log_metrics(m, step):
        if stop_at is not None and step == stop_at:
            raise Stop
        logged.append((step, m["train/loss"]))

    res = train(
        model, tok, examples, cfg, Accelerator(cpu=True), log_metrics, state_dir=state_dir, run_key="k"
    )
    return res, logged


def test_stop_after_step_3_of_6_and_resume_gives_every_loss(tiny_model, tmp_path):
    whole, _ = _train(tiny_model, None)
    with pytest.raises(Stop):  # killed while logging step 4: the state of step 3 is the last one
        _train(tiny_model, tmp_path, stop_at=4, checkpoint_every=1, keep_states=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000002", "step-0000003"]  # keep 2
    resumed, logged = _train(tiny_model, tmp_path, checkpoint_every=1, keep_states=2)
    assert resumed.resumed_from.endswith("step-0000003")
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-6)
    assert [s for s, _ in logged] == [1, 2, 3, 4, 5, 6]  # the restored history is logged again
    assert [v for _, v in logged] == pytest.approx(whole.losses, abs=1e-6)
    assert (resumed.steps, resumed.target_tokens, resumed.seen_tokens) == (
        whole.steps,
        whole.target_tokens,
        whole.seen_tokens,
    )


def test_a_state_of_another_run_key_is_refused(tiny_model, tmp_path):
    with pytest.raises(Stop):
        _train(tiny_model, tmp_path, stop_at=2, checkpoint_every=1)
    with pytest.raises(checkpoints.StateMismatch, match="saved by run key k, not other"):
        checkpoints.latest(tmp_path, "other")


def _launch(tmp_path, cache_dir, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [
        "debug=fast",
        f"paths.output_root={tmp_path}",
        f"paths.cache_dir={cache_dir}",
        "study=resume",
        "train.max_steps=60",
        "train.checkpoint_every=1",
        *extra,
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "limo_exp", "run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_sigint_default,
    )


def _sigint_default() -> None:
    """Ctrl-C reaches the run even when pytest itself ignores SIGINT (a background job of a
    script, as CI may start it): an ignored SIGINT is inherited, and limo-exp keeps it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _last_state(tmp_path) -> int:
    return max(
        (int(p.parent.name[5:]) for p in tmp_path.glob("runs/*/state/step-*/progress.json")), default=0
    )


def _kill_after_a_new_state(proc, tmp_path, sig) -> None:
    before, deadline = _last_state(tmp_path), time.time() + 240
    while _last_state(tmp_path) <= before:
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()[-3000:]
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=120)


@pytest.mark.slow  # subprocesses for tens of seconds: make test-slow (.ci/run runs it)
def test_sigterm_then_sigkill_then_relaunch(small_cfg, tmp_path, cache_dir):
    """SIGTERM ends the MLflow run KILLED; SIGKILL leaves it RUNNING until the relaunch closes it;
    the relaunch resumes from the last state and logs the same losses as an uninterrupted run."""
    from limo_exp.commands.run import run

    _kill_after_a_new_state(_launch(tmp_path, cache_dir), tmp_path, signal.SIGTERM)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    exp = client.get_experiment_by_name("resume").experiment_id
    first = client.search_runs([exp])
    assert [r.info.status for r in first] == ["KILLED"]
    _kill_after_a_new_state(_launch(tmp_path, cache_dir), tmp_path, signal.SIGKILL)
    second = [r for r in client.search_runs([exp]) if r.info.run_id != first[0].info.run_id]
    assert [r.info.status for r in second] == ["RUNNING"]  # nothing can run after SIGKILL

    cfg = small_cfg("study=resume", "train.max_steps=60", "train.checkpoint_every=1")
    out = run(cfg)
    assert client.get_run(second[0].info.run_id).info.status == "KILLED"  # closed by the relaunch
    final = client.get_run(out["run_id"])
    assert final.info.status == "FINISHED"
    assert final.data.tags["limo.previous_attempt"] == second[0].info.run_id
    for earlier in (first[0], second[0]):  # each killed attempt names the run that replaced it
        assert client.get_run(earlier.info.run_id).data.tags["limo.replaced_by"] == out["run_id"]
    step = int(final.data.tags["limo.resumed_from_state"].rsplit("step-", 1)[1])
    assert 2 <= step < 60
    losses = [
        m.value for m in sorted(client.get_metric_history(out["run_id"], "train/loss"), key=lambda m: m.step)
    ]
    assert len(losses) == 60
    assert not (tmp_path / "runs" / out["run_key"] / "state").exists()  # removed when the run finished

    whole = run(small_cfg("study=whole", "train.max_steps=60", "train.checkpoint_every=1"))
    assert whole["run_key"] == out["run_key"]  # checkpointing settings are not part of the key
    history = client.get_metric_history(whole["run_id"], "train/loss")
    assert losses == pytest.approx([m.value for m in sorted(history, key=lambda m: m.step)], abs=1e-6)


@pytest.mark.slow  # subprocesses for tens of seconds: make test-slow (.ci/run runs it)
def test_ctrl_c_in_a_sweep_ends_the_run_and_its_parent_killed(tmp_path, cache_dir):
    """SIGINT (Ctrl-C) unwinds like SIGTERM: the child run and the sweep's parent end KILLED."""
    proc = _launch(tmp_path, cache_dir, "data.n_samples=8", "--multirun")
    _kill_after_a_new_state(proc, tmp_path, signal.SIGINT)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    runs = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    kinds = {r.data.tags.get("limo.kind"): r.info.status for r in runs}
    assert kinds == {"run": "KILLED", "sweep": "KILLED"}
    assert list(tmp_path.glob("runs/*/state/step-*/progress.json"))  # the last state is kept


FINALIZED = """
import os, signal, sys, time
from limo_exp.commands.common import stop_on_signals

stop_on_signals()
class Finalized:
    def __del__(self):  # the signal lands here, where Python drops the exception it raises
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
Finalized()
time.sleep(5)
"""


@pytest.mark.parametrize(("sig", "code"), [("SIGINT", -signal.SIGINT), ("SIGTERM", 128 + signal.SIGTERM)])
def test_a_stop_that_lands_in_a_finalizer_is_sent_again(sig, code):
    """Python drops an exception raised in a finalizer (``__del__``, a weakref callback during
    garbage collection): a Ctrl-C or SIGTERM that lands there still stops the process."""
    cmd = [sys.executable, "-c", FINALIZED, sig]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, preexec_fn=_sigint_default)
    assert out.returncode == code, out.stderr
    assert "Exception ignored in" in out.stderr  # it did land in the finalizer first


def test_a_second_launch_of_a_running_key_fails(tmp_path):
    from limo_exp.commands.common import run_lock

    with (
        run_lock(tmp_path),
        pytest.raises(RuntimeError, match="is being run by another process"),
        run_lock(tmp_path),
    ):
        pass
    with run_lock(tmp_path):  # released
        json.dumps({})


def test_a_sweep_parent_left_running_by_a_stop_is_closed_at_exit(tmp_path, monkeypatch):
    """A Ctrl-C after the parent run exists but before a job could mark it: closed KILLED at exit
    (FAILED when no signal came); a parent the sweep already closed is left as it is."""
    from limo_exp.commands import common, sweep
    from limo_exp.tracking.tracker import Tracker

    t = Tracker(f"sqlite:///{tmp_path}/mlruns.db", "exit", str(tmp_path / "art"))
    statuses = []
    for stopped, end_first in ((True, False), (False, False), (True, True)):
        monkeypatch.setattr(common, "_stopping", [signal.SIGINT] if stopped else [])
        t.start("sweep")
        if end_first:
            t.end("FINISHED")
        sweep._close_if_open(t)
        statuses.append(t.client.get_run(t.run_id).info.status)
    assert statuses == ["KILLED", "FAILED", "FINISHED"]
