"""The real services the slow tests start on this machine, one way each: an MLflow server, a SLURM
cluster (tests/slurm/cluster.sh), a free port, and a wait for a port to answer."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CLUSTER = Path(__file__).parent / "slurm" / "cluster.sh"
START_S = 600  # what a server may take to answer: minutes on a loaded shared CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, seconds: float = START_S) -> None:
    """Until 127.0.0.1:``port`` accepts a connection; fails if ``proc`` ends or time runs out."""
    deadline = time.time() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.time() < deadline and proc.poll() is None, f"{what} did not start"
            time.sleep(0.5)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path) -> Iterator[int]:
    """``mlflow server`` on 127.0.0.1 (one worker, a process group of its own) over ``backend_uri``
    and ``artifacts``; yields its port once it answers, stops the whole group at the end."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_port(port, server, "mlflow server")
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a loaded machine: its workers slow to stop
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=60)


def slurm_cluster(tmp_path_factory, name: str, ports: tuple[int, int], nodes: int = 1) -> Iterator[str]:
    """For a module fixture: a SLURM cluster on this machine (slurmctld on ``ports[0]``, slurmd on
    ``ports[1]``, ``nodes`` of them); yields its slurm.conf, stops it at the end. Skipped, saying
    why, when not root or when Debian's packages cannot be installed."""
    if os.geteuid() != 0:
        pytest.skip("a SLURM cluster on this machine needs root (munge, slurmd)")
    d = tmp_path_factory.mktemp(name)
    env = os.environ | {"SLURMCTLD_PORT": str(ports[0]), "SLURMD_PORT": str(ports[1]), "NODES": str(nodes)}
    r = subprocess.run(
        ["bash", str(CLUSTER), "start", str(d)], capture_output=True, text=True, timeout=600, env=env
    )
    if r.returncode == 3:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    yield r.stdout.strip().splitlines()[-1]
    subprocess.run(["bash", str(CLUSTER), "stop", str(d)], check=False)


def two_processes(
    config_yaml: Path, script: Path, args: list[str], port: int, limit_s: float, env=None
) -> str:
    """``script args`` on two CPU processes under ``accelerate launch --config_file config_yaml``
    (gloo on 127.0.0.1:``port``, fp32), in a process group of its own killed whole past
    ``limit_s``; returns the log, fails the test with its tail when the launch fails. DeepSpeed
    finds the shared-memory op it built once per venv (make test-deepspeed builds it)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_yaml)]
    cmd += ["--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(port)]
    cmd += [str(script), *args]
    env = os.environ | {"TORCH_EXTENSIONS_DIR": str(Path(sys.prefix) / "torch_extensions")} | (env or {})
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env
    )
    try:
        log, _ = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"two processes under {config_yaml.name} did not end within {limit_s} s:\n{log[-6000:]}")
    assert proc.returncode == 0, log[-6000:]
    return log


def slurm_env(conf: str) -> dict[str, str]:
    """What a user's shell on the test cluster has: SLURM's clients where apt put them (not this
    venv, nor a PATH that hides them), and the cluster's slurm.conf."""
    return {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin", "SLURM_CONF": conf}
