"""hydra/launcher=slurm_cpu on a real one-node SLURM (Debian's slurmctld, slurmd, munge) started on
this machine by tests/slurm/cluster.sh, run as a user would: ``.venv/bin/limo-exp`` with no venv
on PATH. A 2-point sweep, its relaunch (nothing submitted), a failing point, a point stopped
mid-training (SIGTERM from scancel, as at a time limit: state saved, KILLED) and the relaunch that
resumes it; SLURM's and MLflow's states asserted. Needs root (CI's machine); skips saying why
elsewhere. ~3 minutes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import services

pytestmark = pytest.mark.slow

LIMO_EXP = Path(sys.executable).parent / "limo-exp"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A SLURM of one node on this machine (tests/slurm/cluster.sh)."""
    yield from services.slurm_cluster(tmp_path_factory, "slurm", (6937, 6938))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("sweeps")


def sweep_in_background(slurm: str, work: Path, *overrides: str) -> subprocess.Popen:
    """``limo-exp run --multirun`` on the cluster as a user runs it: the venv's limo-exp, no venv on PATH."""
    env = services.slurm_env(slurm)
    base = ["run", "--multirun", "debug=fast", "hydra/launcher=slurm_cpu", "accelerate=single"]
    paths = [f"paths.output_root={work}/out", f"paths.cache_dir={work}/cache"]
    cmd = [str(LIMO_EXP), *base, *paths, *overrides]
    return subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sweep(slurm: str, work: Path, *overrides: str) -> subprocess.CompletedProcess:
    proc = sweep_in_background(slurm, work, *overrides)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def jobs(slurm: str) -> dict[str, str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i %T"], env=services.slurm_env(slurm),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split() for line in out.splitlines())


def runs(work: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work}/out/mlruns.db")
    exps = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(exps, order_by=["attributes.start_time ASC"], max_results=100)


def summary(out: str) -> dict[int, str]:
    """The launcher's last lines: point -> state."""
    return {
        int(m[1]): m[2]
        for m in re.finditer(r"^  #(\d+) .*?: (FINISHED|skipped|FAILED|KILLED), run", out, re.M)
    }


def test_a_sweep_on_slurm_its_relaunch_a_failure_and_a_time_limit(slurm, work):
    r = sweep(slurm, work, "data.n_samples=4,8")
    assert r.returncode == 0, r.stderr[-3000:]
    assert summary(r.stdout) == {0: "FINISHED", 1: "FINISHED"}
    assert sorted(jobs(slurm).values()) == ["COMPLETED", "COMPLETED"]
    assert r.stderr.count("Bypassing sacct error") == 0  # no accounting here: squeue says
    client, found = runs(work)
    points = [x for x in found if x.data.tags.get("limo.kind") == "run"]
    assert [x.info.status for x in points] == ["FINISHED", "FINISHED"]

    again = sweep(slurm, work, "data.n_samples=4,8")  # nothing left: nothing queued, no parent run
    assert again.returncode == 0 and summary(again.stdout) == {0: "skipped", 1: "skipped"}
    assert len(jobs(slurm)) == 2 and len(runs(work)[1]) == len(found)

    bad = sweep(slurm, work, "data.n_samples=4,5000")  # 5000 > the pool: NotEnoughRecords in the job
    assert bad.returncode == 1 and summary(bad.stdout) == {0: "skipped", 1: "FAILED"}
    assert "NotEnoughRecords: asked for 5000 records" in bad.stdout and "Traceback" not in bad.stderr[-400:]
    log = re.search(r"NotEnoughRecords.*; log: (\S+)", bad.stdout)[1]
    assert Path(log).exists() and "NotEnoughRecords" in Path(log).read_text()
    assert sorted(jobs(slurm).values()) == ["COMPLETED", "COMPLETED", "FAILED"]  # the job failed
    client, found = runs(work)
    failed = next(x for x in found if x.info.status == "FAILED" and x.data.tags.get("limo.kind") == "run")
    assert "NotEnoughRecords" in failed.data.tags["limo.error"]
    assert [a.path for a in client.list_artifacts(failed.info.run_id, "logs")] == [f"logs/{Path(log).name}"]

    # stopped mid-training: SIGTERM to the job's processes, as SLURM sends at the time limit (its
    # SIGUSR2 warning, handled the same way, may come up to a minute early: by hand only, see
    # the README); the run saves its state at the step's end and ends KILLED; the job fails
    limited = ["data.n_samples=6", "train.max_steps=1200", "train.checkpoint_every=100000"]
    stopped = sweep_in_background(slurm, work, *limited, f"hydra.sweep.dir={work}/cut")
    run_file, deadline = work / "cut" / "0" / "run_id", time.time() + 240
    while not run_file.exists() and time.time() < deadline:
        time.sleep(1)  # the point's run has started
    client = runs(work)[0]
    while time.time() < deadline and not client.get_metric_history(
        run_file.read_text().strip(), "train/loss"
    ):
        time.sleep(1)  # and is training (it logs a loss a step)
    (job,) = [j for j, state in jobs(slurm).items() if state == "RUNNING"]
    subprocess.run(["scancel", "--signal=TERM", job], env=services.slurm_env(slurm), check=True)
    out, _ = stopped.communicate(timeout=300)  # stderr read too: a full pipe would block the sweep
    assert stopped.returncode == 1 and summary(out) == {0: "KILLED"}, out[-2000:]
    client, found = runs(work)
    killed = [x for x in found if x.data.tags.get("limo.kind") == "run"][-1]
    assert killed.info.status == "KILLED" and list(
        Path(work, "out", killed.data.tags["limo.run_dir"], "state").glob("step-*")  # under the output root
    )
    # the relaunch (a longer limit: not part of the run key) resumes from that state and finishes
    done = sweep(slurm, work, *limited, "hydra.launcher.timeout_min=10")
    assert done.returncode == 0 and summary(done.stdout) == {0: "FINISHED"}, done.stdout[-2000:]
    last = [x for x in runs(work)[1] if x.data.tags.get("limo.kind") == "run"][-1]
    assert last.info.status == "FINISHED" and last.data.tags["limo.previous_attempt"] == killed.info.run_id
    assert last.data.tags["limo.resumed_from_state"] != "none"


def test_resources_the_cluster_lacks_are_one_line(slurm, work):
    """The GPU preset on a partition without GPUs: sbatch's refusal, in one line naming the keys."""
    env = services.slurm_env(slurm)
    r = subprocess.run(
        [str(LIMO_EXP), "run", "--multirun", "debug=fast", "hydra/launcher=slurm", "accelerate=single",
         f"paths.output_root={work}/gpu", "data.n_samples=4"],
        env=env, cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "SLURM refused the sweep's jobs" in last and "hydra/launcher=slurm_cpu" in last, last
