"""Two nodes, rehearsed on one machine: a sweep point's command, as the SLURM launcher builds it
for ``hydra.launcher.nodes=2`` (``points.accelerate_command``: ``--num_machines 2 --machine_rank
0|1 --main_process_ip <first node> --main_process_port <port>``), started twice on localhost, one
CPU process a "machine" (gloo), under FSDP and under DDP: ``limo-exp run`` end to end. One MLflow
run, written by global rank 0 alone (machine 1's process is given a store of its own, which must
never be created); one checkpoint; one evaluation; the training losses of a one-process run.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import services
from conftest import compose
from omegaconf import OmegaConf

from hydra_plugins.limo_exp_launcher import points as launch

LIMIT_S = 270  # each test under 5 minutes: a rank left waiting in a collective is killed past this
SLURM_LIMIT_S = 480  # the sweep through SLURM: its plan, the job's start, the two nodes' run
STEPS = 3
COMMON = [  # the point's overrides, as a sweep passes them to its job
    "debug=fast",
    "study=multinode",
    "train.batch_size=1",
    "train.global_batch_size=2",  # 2 micro-batches of 1: accumulated on one process, one a rank on two
    f"train.max_steps={STEPS}",
    "train.checkpoint_every=2",  # a state at step 2, kept (the last step saves the model instead)
    "train.keep_states_at_end=true",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _overrides(root: Path, cache_dir: Path, topology: str) -> list[str]:
    paths = [f"paths.output_root={root}", f"paths.cache_dir={cache_dir}", f"eval.store={root}/responses"]
    return [*COMMON, f"accelerate={topology}", *paths]


def _two_machines(root: Path, cache_dir: Path, topology: str, *extra: str, ok: bool = True):
    """Write the point's topology as the launcher does and run its command on machine ranks 0 and
    1 at once, each ending with success (``ok``) or not; returns each machine's command and output."""
    overrides = [*_overrides(root, cache_dir, topology), *extra]
    accelerate = OmegaConf.to_container(compose(overrides).accelerate, resolve=True)
    point = launch.Point(tuple(overrides), str(root / "sweep"), 0, nodes=2, gpus_per_node=1)
    launch.write_topology(point, accelerate)
    host, port = socket.gethostname(), _free_port()
    cmds = [launch.accelerate_command(point, node_rank=r, hostnames=[host, host], port=port) for r in (0, 1)]
    elsewhere = root / "machine1"  # where machine 1 would keep a store of its own: it must not
    elsewhere.mkdir()
    envs = [os.environ.copy(), os.environ | {"LIMO_TRACKING_URI": f"sqlite:///{elsewhere}/mlruns.db"}]
    procs = [
        subprocess.Popen(
            cmd,
            env=env,
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        for cmd, env in zip(cmds, envs)
    ]
    deadline, outs = time.time() + LIMIT_S, []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=max(1, deadline - time.time()))[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        rest = [p.communicate()[0] for p in procs[len(outs) :]]
        pytest.fail(f"no end after {LIMIT_S} s:\n" + "\n---\n".join(o[-3000:] for o in outs + rest))
    for r, (p, out) in enumerate(zip(procs, outs)):
        assert (p.returncode == 0) == ok, f"machine {r}:\n{out[-5000:]}"
    assert not list(elsewhere.iterdir()), "machine 1's process opened a tracking store"
    return [" ".join(c) for c in cmds], outs


def _runs(root: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root}/mlruns.db")
    exps = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(exps, max_results=100)


def _losses(client, run_id: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, "train/loss"), key=lambda m: m.step)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, cache_dir, tiny_model):
    """The same point on one process (``limo-exp run`` in this process): its training losses."""
    from limo_exp.commands.run import run

    root = tmp_path_factory.mktemp("one")
    out = run(compose(_overrides(root, cache_dir, "single")))
    client, _ = _runs(root)
    losses = _losses(client, out["run_id"])
    assert len(losses) == STEPS
    return losses


def _evaluations(out: str) -> int:
    """Evaluations a process's output shows (lm-eval names each task's generation settings once)."""
    return out.count("generation_kwargs:")


@pytest.mark.slow
def test_a_failed_two_node_point_is_marked_by_global_rank_0_alone(tmp_path, cache_dir, tiny_model):
    """A point of a sweep that fails on every rank (more records asked for than curation keeps):
    the sweep's parent run is marked FAILED by global rank 0; machine 1's process (local rank 0)
    leaves the store alone, and its last line is the run's own error, not the store's."""
    from limo_exp.tracking.tracker import PARENT_FILE, Tracker

    parent = Tracker(f"sqlite:///{tmp_path}/mlruns.db", "multinode", str(tmp_path / "mlartifacts"))
    parent.start("sweep")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / PARENT_FILE).write_text(parent.run_id)
    _, outs = _two_machines(tmp_path, cache_dir, "fsdp", "data.n_samples=5000", ok=False)
    for out in outs:
        assert "NotEnoughRecords: asked for 5000 records" in launch.cause(out.splitlines()), out[-3000:]
    client, found = _runs(tmp_path)
    status = {r.data.tags.get("limo.kind", "sweep"): r.info.status for r in found}
    assert status == {"sweep": "FAILED", "run": "FAILED"}


def _check_point(root: Path, logs: list[str], sharded: bool, one_process: list[float]):
    """One point's run, trained on two machines: one MLflow run (besides a sweep's parent), one
    checkpoint, a state with both ranks' shards (``sharded``) or the whole model, one evaluation
    (machine 0's: ``logs``, each machine's output), one process's losses."""
    client, found = _runs(root)
    (run,) = [r for r in found if r.data.tags.get("limo.kind") == "run"]  # one MLflow run
    m = run.data.metrics
    assert run.info.status == "FINISHED" and m["train/steps"] == STEPS
    assert m["cost/device_hours"] * 3600 / m["train/seconds"] == pytest.approx(2)  # two processes trained
    run_dir = root / run.data.tags["limo.run_dir"]
    assert sorted(p.relative_to(run_dir) for p in root.rglob("checkpoint")) == [Path("checkpoint")]
    assert (run_dir / "checkpoint" / "model.safetensors").is_file()  # one checkpoint, the run's
    (state,) = (run_dir / "state").iterdir()  # the state of step 2, kept (train.keep_states_at_end)
    saved = sorted(str(p.relative_to(state)) for p in state.rglob("*") if p.is_file())
    shards = {}  # torch's distributed checkpoint: a file per rank, in each of its folders
    for name in saved:
        if name.endswith(".distcp"):
            shards.setdefault(str(Path(name).parent), []).append(Path(name).name)
    if sharded:  # the model's and the optimizer's folders, each with both machines' shards
        assert len(shards) == 2 and all(v == ["__0_0.distcp", "__1_0.distcp"] for v in shards.values()), saved
    else:
        assert "model.safetensors" in saved and not shards, saved

    # evaluated once, by global rank 0 (machine 0): 4 questions generated, each logged once
    assert [_evaluations(log) for log in logs] == [1, 0]
    assert m["eval/responses_generated"] == 4 and m["eval/limo_synthetic/n_questions"] == 4
    evaluated = [k for k in m if k.startswith("eval/")]
    assert all(len(client.get_metric_history(run.info.run_id, k)) == 1 for k in evaluated)
    (stored,) = (root / "responses").glob("*.jsonl")
    assert len(stored.read_text().splitlines()) == 4

    assert _losses(client, run.info.run_id) == pytest.approx(one_process, rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("topology", "sharded"), [("fsdp", True), ("ddp", False)])
def test_a_two_node_point_on_localhost(topology, sharded, one_process, tmp_path, cache_dir, tiny_model):
    cmds, outs = _two_machines(tmp_path, cache_dir, topology)
    assert "--num_machines 2 --machine_rank 0" in cmds[0] and "--num_machines 2 --machine_rank 1" in cmds[1]
    _check_point(tmp_path, outs, sharded, one_process)


def test_the_first_node_is_met_at_an_address_that_resolves(capsys):
    """SLURM's node names need not be host names (two slurmd on one machine: n1, n2): the
    rendezvous address is the name where it resolves, else SLURM's NodeAddr of it, else
    SLURM_LAUNCH_NODE_IPADDR; failing all, the name and one line saying so."""
    addrs = {"n1": "127.0.0.1", "gpu-a01": "gpu-a01"}
    known = {"localhost", "127.0.0.1", "10.1.2.3"}
    first = launch.first_node_address
    kw = {"node_addr": addrs.get, "resolves": known.__contains__}
    assert first("localhost", {}, **kw) == "localhost"
    assert first("n1", {"SLURM_LAUNCH_NODE_IPADDR": "10.1.2.3"}, **kw) == "127.0.0.1"
    assert first("gpu-a01", {"SLURM_LAUNCH_NODE_IPADDR": "10.1.2.3"}, **kw) == "10.1.2.3"
    assert capsys.readouterr().err == ""
    assert first("gpu-a01", {}, **kw) == "gpu-a01"
    assert "the job's first node 'gpu-a01' does not resolve here" in capsys.readouterr().err
    assert launch.first_node_address("localhost", {}) == "localhost"  # this machine's resolver
    point = launch.Point((), "/s", 0, nodes=2, gpus_per_node=1)
    cmd = launch.accelerate_command(
        point, node_rank=1, hostnames=["n1", "n2"], port=29500, address="127.0.0.1"
    )
    assert cmd[cmd.index("--main_process_ip") + 1] == "127.0.0.1"


ELASTIC_SUMMARY = """Traceback (most recent call last):
  File "/venv/bin/accelerate", line 6, in <module>
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
limo_exp FAILED
------------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  rank      : 0 (local_rank: 0)
============================================================"""


def test_the_cause_of_a_multi_process_failure_is_the_run_s_exception():
    """A point of several processes fails through torch's launcher, which prints its summary after
    the run's traceback: the cause is the run's exception, not the summary's ``Failures:``."""
    inner = "limo_exp.selection.select.NotEnoughRecords: asked for 5000 records of tier 'long'"
    lines = [
        "Traceback (most recent call last):",
        '  File "x.py", line 3',
        inner,
        *ELASTIC_SUMMARY.splitlines(),
    ]
    assert launch.cause(lines) == inner


LIMO_EXP = Path(sys.executable).parent / "limo-exp"


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """A SLURM of two nodes on this machine (tests/slurm/cluster.sh, NODES=2): n1 and n2, names
    that do not resolve, at NodeAddr 127.0.0.1 and 127.0.0.2."""
    yield from services.slurm_cluster(tmp_path_factory, "slurm2", (6947, 6948), nodes=2)


@pytest.mark.slow
def test_a_two_node_point_through_slurm(two_nodes, one_process, tmp_path, cache_dir, tiny_model):
    """``hydra/launcher=slurm_cpu hydra.launcher.nodes=2 accelerate=fsdp``: one job on n1 and n2,
    each node running the point's command; they meet at n1's NodeAddr."""
    env = services.slurm_env(two_nodes)
    launcher = ["hydra/launcher=slurm_cpu", "hydra.launcher.nodes=2", f"hydra.sweep.dir={tmp_path}/sweep"]
    cmd = [str(LIMO_EXP), "run", "--multirun", *_overrides(tmp_path, cache_dir, "fsdp"), *launcher]
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=SLURM_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["scancel", "--user=root"], env=env, check=False)
        out, err = proc.communicate()
        pytest.fail(f"no end after {SLURM_LIMIT_S} s:\n{out[-2000:]}\n{err[-3000:]}")
    assert proc.returncode == 0, f"{out[-2000:]}\n{err[-3000:]}"
    assert re.search(r"^  #0 .*: FINISHED, run \w+", out, re.M), out[-2000:]

    (job,) = (tmp_path / "sweep" / ".submitit").glob("[0-9]*")
    logs = [(job / f"{job.name}_{node}_log.out").read_text() for node in (0, 1)]
    for node, log in enumerate(logs):
        assert f"--num_machines 2 --machine_rank {node} --main_process_ip 127.0.0.1 " in log, log[-2000:]
    states = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%T %N"], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert states == ["COMPLETED", "n[1-2]"]
    errs = [(job / f"{job.name}_{node}_log.err").read_text() for node in (0, 1)]
    _check_point(tmp_path, errs, True, one_process)
