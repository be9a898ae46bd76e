"""hydra/launcher=slurm: one multi-GPU, multi-node job per sweep point under accelerate launch.
Rendered and dry-run here (submitit's executor replaced): nothing is submitted."""

from __future__ import annotations

import os
import sys
import tempfile
import types
from pathlib import Path

import pytest
import yaml
from conftest import CONF_DIR, compose
from omegaconf import OmegaConf

from hydra_plugins.limo_exp_launcher import points as launch

FSDP = yaml.safe_load((CONF_DIR / "accelerate" / "fsdp.yaml").read_text())


def test_command_of_a_two_node_fsdp_point(tmp_path):
    point = launch.Point(("data.n_samples=400", "seed=1"), str(tmp_path), 3, nodes=2, gpus_per_node=8)
    assert launch.write_topology(point, FSDP) == str(tmp_path / "3" / "accelerate.yaml")
    assert yaml.safe_load(Path(point.config_file).read_text()) == FSDP
    port = launch.port_for("987654_3")
    assert port == launch.port_for("987654_3") != launch.port_for("987655_3") and 20000 <= port < 40000
    assert launch.port_for("77_13") != launch.port_for("771_3")  # the same digits, other jobs
    cmd = launch.accelerate_command(point, node_rank=1, hostnames=["gpu-a01", "gpu-a02"], port=port)
    venv_accelerate = str(Path(sys.executable).parent / "accelerate")  # the venv's, whatever PATH says
    assert " ".join(cmd) == (
        f"{venv_accelerate} launch --config_file {tmp_path}/3/accelerate.yaml --num_processes 16 --num_machines 2 "
        f"--machine_rank 1 --main_process_ip gpu-a01 --main_process_port {port} -m limo_exp run --multirun "
        f"hydra/launcher=basic ~hydra.callbacks.sweep_parent hydra.sweep.dir={tmp_path} hydra.sweep.subdir=3 "
        "data.n_samples=400 seed=1"
    )
    with pytest.raises(ValueError, match="the job has 1 nodes"):
        launch.accelerate_command(point, node_rank=0, hostnames=["gpu-a01"], port=port)
    with pytest.raises(
        ValueError,
        match=r"choose its topology, accelerate=ddp\|deepspeed_zero3\|deepspeed_zero3_offload\|fsdp\|fsdp_offload\|single",
    ):
        launch.write_topology(point, None)


def test_accelerate_missing_beside_the_python_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    with pytest.raises(FileNotFoundError, match=f"looked for {tmp_path}/bin/accelerate"):
        launch.accelerate_executable()


def test_the_cause_of_a_failed_point_is_the_inner_exception():
    lines = [
        "Traceback (most recent call last):",
        '  File "x.py", line 3, in <module>',
        "limo_exp.selection.NotEnoughRecords: asked for 5000 records, the curated pool has 812",
        "Traceback (most recent call last):",
        "subprocess.CalledProcessError: Command '['python', '-m', 'limo_exp']' returned non-zero exit status 1.",
        "",
    ]
    assert launch.cause(lines) == lines[2]
    assert launch.cause(["just a line", ""]) == "just a line"


def test_accelerate_is_a_group_outside_the_run_key():
    from limo_exp.identity import RunSpec

    plain = OmegaConf.to_container(compose([]), resolve=True)
    fsdp = OmegaConf.to_container(compose(["accelerate=fsdp", "accelerate.mixed_precision=no"]), resolve=True)
    assert "accelerate" not in plain and fsdp["accelerate"] == FSDP | {"mixed_precision": "no"}
    assert RunSpec.parse(fsdp).key("p", "b") == RunSpec.parse(plain).key("p", "b")  # where, not what
    for name in ("single", "ddp", "fsdp", "deepspeed_zero3"):
        RunSpec.parse(OmegaConf.to_container(compose([f"accelerate={name}"]), resolve=True))


SLURM_CLIENT = ("sbatch", "squeue", "sacct")


def _slurm_path(monkeypatch, commands=SLURM_CLIENT) -> None:
    """PATH with stand-ins for the SLURM client ``commands`` (each exits 0) and without any real
    SLURM command, whatever this machine has installed: the launcher sees only what the test says."""
    fake = Path(tempfile.mkdtemp(prefix="slurm-client-"))
    for c in commands:
        (fake / c).write_text("#!/bin/sh\nexit 0\n")
        (fake / c).chmod(0o755)
    kept = [
        d for d in os.environ["PATH"].split(os.pathsep) if not any(Path(d, c).exists() for c in SLURM_CLIENT)
    ]
    monkeypatch.setenv("PATH", os.pathsep.join([str(fake), *kept]))


def _dry_run(monkeypatch, *overrides: str, commands=SLURM_CLIENT) -> list[list[str]]:
    """``limo-exp run --multirun hydra/launcher=slurm ...`` with a fake submitit: each job's two nodes run
    in this process; returns the commands the nodes would have run. The SLURM client on PATH is
    ``commands`` (stand-ins), not what this machine happens to have installed."""
    import submitit

    _slurm_path(monkeypatch, commands)

    from hydra_plugins.limo_exp_launcher import accelerate_submitit as plugin
    from limo_exp.cli import main

    ran: list[list[str]] = []

    class Executor:
        def __init__(self, cluster, **kw):
            assert cluster == "slurm"

        def update_parameters(self, **kw):
            assert kw["slurm_nodes"] if "slurm_nodes" in kw else kw["nodes"] == 2

        def map_array(self, fn, *args):
            jobs = []
            for k, call in enumerate(zip(*args)):
                results = []
                for node in (0, 1):
                    env = types.SimpleNamespace(
                        node=node,
                        hostnames=["gpu-a01", "gpu-a02"],
                        job_id=f"77_{k}",
                        global_rank=node,
                        paths=types.SimpleNamespace(stderr=f"/logs/77_{k}_%t_log.err"),
                    )
                    monkeypatch.setattr(submitit, "JobEnvironment", lambda env=env: env)
                    results.append(fn(*call))
                paths = types.SimpleNamespace(stderr=f"/logs/77_{k}_%t_log.err")
                jobs.append(
                    types.SimpleNamespace(results=lambda r=results: r, paths=paths, state="COMPLETED")
                )
            return jobs

    monkeypatch.setattr(submitit, "AutoExecutor", Executor)
    monkeypatch.setattr(
        plugin.AccelerateSubmititLauncher,
        "_run_forwarding",
        lambda self, cmd: ran.append(cmd) or (0, [], None),
    )
    main(
        [
            "run",
            "--multirun",
            "hydra/launcher=slurm",
            "hydra.launcher.nodes=2",
            "hydra.launcher.gpus_per_node=8",  # the preset's default is one GPU
            "tracking=disabled",
            *overrides,
        ]
    )
    return ran


def test_a_slurm_sweep_runs_each_point_under_accelerate(tmp_path, monkeypatch):
    ran = _dry_run(monkeypatch, "accelerate=fsdp", "data.n_samples=8,16", f"paths.output_root={tmp_path}")
    assert len(ran) == 4  # 2 points x 2 nodes
    sweep_dir = next(a.split("=", 1)[1] for a in ran[0] if a.startswith("hydra.sweep.dir="))
    for k, cmd in enumerate(ran):
        point, node = divmod(k, 2)
        assert cmd[1:4] == ["launch", "--config_file", f"{sweep_dir}/{point}/accelerate.yaml"]
        assert (
            cmd[cmd.index("--machine_rank") + 1] == str(node)
            and cmd[cmd.index("--num_processes") + 1] == "16"
        )
        assert f"data.n_samples={(8, 16)[point]}" in cmd and "accelerate=fsdp" in cmd
        assert not any(a.startswith("hydra/launcher=slurm") for a in cmd)
        assert yaml.safe_load(Path(cmd[3]).read_text()) == FSDP


def test_a_machine_without_a_slurm_client_says_so_in_one_line(tmp_path, monkeypatch):
    """No sbatch (a laptop, CI's fresh machine): one line naming what is missing, nothing submitted."""
    with pytest.raises(
        SystemExit, match=r"this machine has no SLURM client \(sbatch and squeue not on PATH\)"
    ):
        _dry_run(monkeypatch, "accelerate=fsdp", f"paths.output_root={tmp_path}", commands=())


def test_without_sacct_job_states_come_from_squeue(monkeypatch, capsys):
    """A client without accounting (no sacct at all, or sacct failing): states from squeue."""
    from submitit.slurm import slurm

    from hydra_plugins.limo_exp_launcher import accelerate_submitit as plugin

    monkeypatch.setattr(slurm.SlurmJob, "watcher", slurm.SlurmInfoWatcher(delay_s=1))
    _slurm_path(monkeypatch, ("sbatch", "squeue"))
    plugin.watch_without_accounting()
    assert slurm.SlurmJob.watcher.limo_squeue
    assert "SLURM accounting is off (no sacct on PATH): job states from squeue" in capsys.readouterr().out
    monkeypatch.setattr(slurm.SlurmJob, "watcher", slurm.SlurmInfoWatcher(delay_s=1))
    _slurm_path(monkeypatch)  # a sacct that answers: submitit's own watcher stays
    plugin.watch_without_accounting()
    assert not getattr(slurm.SlurmJob.watcher, "limo_squeue", False)


def test_a_slurm_point_without_a_topology_fails_before_submitting(tmp_path, monkeypatch):
    """One line listing every topology, before a parent run or anything else is made."""
    with pytest.raises(
        SystemExit,
        match=r"choose its topology, accelerate=ddp\|deepspeed_zero3\|deepspeed_zero3_offload\|fsdp\|fsdp_offload\|single",
    ):
        _dry_run(monkeypatch, f"paths.output_root={tmp_path}")
    assert not (tmp_path / "hydra").exists()


def test_a_stop_reaches_the_ranks_in_sessions_of_their_own_not_their_launcher(tmp_path):
    """As torch's launcher starts ranks (a session each): the job's SIGTERM goes to the rank, which
    saves its state and ends; the launcher, which would SIGKILL the ranks 30 s after a signal of
    its own, is left alone (it exits when its ranks do)."""
    import subprocess
    import time

    rank = (
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path({str(tmp_path / 'rank')!r}).write_text('stopped'), sys.exit(143)))\n"
        f"pathlib.Path({str(tmp_path / 'up')!r}).write_text('up')\n"
        "time.sleep(60)\n"
    )
    launcher = (
        "import signal, subprocess, sys, pathlib\n"
        f"signal.signal(signal.SIGTERM, lambda *a: pathlib.Path({str(tmp_path / 'launcher')!r}).write_text('signalled'))\n"
        f"sys.exit(subprocess.Popen([sys.executable, '-c', {rank!r}], start_new_session=True).wait())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", launcher], start_new_session=True)
    deadline = time.time() + 30
    while not (tmp_path / "up").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    kids = launch.stop(proc.pid)
    assert proc.wait(timeout=30) == 143 and len(kids) == 1
    assert (tmp_path / "rank").read_text() == "stopped"
    assert not (tmp_path / "launcher").exists()
