"""What a SLURM job of ``hydra/launcher=slurm`` runs for its sweep point, on every node:

    <venv>/bin/accelerate launch --config_file <point>/accelerate.yaml --num_processes <gpus x nodes>
        --num_machines <nodes> --machine_rank <node> --main_process_ip <first node's address> --main_process_port <port>
        -m limo_exp run --multirun <the point's overrides> <the sweep's folder and number, no new parent run>

``accelerate`` is the one beside the Python that runs the job (the venv's), whatever PATH says.
The Accelerate file is the point's ``accelerate`` group written out (conf/accelerate/<topology>.yaml
plus any ``accelerate.*`` override). The inner run is a one-point multirun in the sweep's own folder,
so every rank composes the same Hydra folder and the run joins the sweep's MLflow parent run; its
rank 0 writes its MLflow run id to ``<point>/run_id`` (``RUN_ID_FILE``) for the job to attach its log.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from limo_exp.commands.sweep import topology_error

RUN_ID_FILE = "run_id"


@dataclass(frozen=True)
class Point:
    """A sweep point as its job needs it: overrides, where its files go, the hardware it asked for."""

    overrides: tuple[str, ...]  # the point's task overrides (no hydra.* ones)
    sweep_dir: str
    job_num: int
    nodes: int
    gpus_per_node: int
    tracking: dict = field(default_factory=dict, compare=False)  # its tracking group, resolved

    @property
    def dir(self) -> Path:
        return Path(self.sweep_dir) / str(self.job_num)

    @property
    def config_file(self) -> str:
        return str(self.dir / "accelerate.yaml")


def write_topology(point: Point, accelerate: dict[str, Any] | None) -> str:
    """Write the point's Accelerate topology (its ``accelerate`` group) where its job reads it."""
    if not accelerate:
        raise ValueError(topology_error())
    path = Path(point.config_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(accelerate), sort_keys=False))
    return str(path)


def port_for(job_id: str | int, base: int = 20000, span: int = 20000) -> int:
    """The rendezvous port of a job: the same on its every node; a hash of the whole id, so array
    tasks ``77_13`` and ``771_3`` (whose digits read the same) get different ports."""
    h = int(hashlib.sha256(str(job_id).encode()).hexdigest()[:12], 16)
    return base + h % span


def accelerate_executable() -> str:
    """The ``accelerate`` beside the running Python (a venv's ``bin/``), not PATH's."""
    exe = Path(sys.executable).parent / "accelerate"
    if not exe.exists():
        raise FileNotFoundError(
            f"no accelerate beside {sys.executable} (looked for {exe}): install limo-exp into the "
            "environment whose Python runs the jobs (make venv)"
        )
    return str(exe)


def slurm_node_addr(node: str) -> str | None:
    """SLURM's address of ``node`` (``NodeAddr`` of ``scontrol show node``), None where unknown."""
    if shutil.which("scontrol") is None:
        return None
    try:
        r = subprocess.run(
            ["scontrol", "-o", "show", "node", node], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"(?:^|\s)NodeAddr=(\S+)", r.stdout) if r.returncode == 0 else None
    return m.group(1) if m else None


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return True


def first_node_address(
    host: str,
    environ: Mapping[str, str] = os.environ,
    node_addr: Callable[[str], str | None] = slurm_node_addr,
    resolves: Callable[[str], bool] = _resolves,
) -> str:
    """Where a job's nodes meet (``--main_process_ip``): its first node, ``host`` (a SLURM node
    name), where that name resolves here; else SLURM's own address for it (``NodeAddr``: node names
    need not be host names, e.g. two slurmd on one machine as ``n1``, ``n2``); else
    ``SLURM_LAUNCH_NODE_IPADDR`` (the node that started the job's step: a batch job's first). Failing
    all, the name, with one line saying the rendezvous will not find it."""
    if resolves(host):
        return host
    addr = node_addr(host)
    if addr and addr != host and resolves(addr):
        return addr
    launch_ip = environ.get("SLURM_LAUNCH_NODE_IPADDR")
    if launch_ip:
        return launch_ip
    print(
        f"limo-exp: the job's first node {host!r} does not resolve here, and SLURM gives no address for it "
        "(scontrol show node: no NodeAddr; no SLURM_LAUNCH_NODE_IPADDR): the nodes' rendezvous will fail",
        file=sys.stderr,
    )
    return host


def accelerate_command(
    point: Point, *, node_rank: int, hostnames: list[str], port: int, address: str | None = None
) -> list[str]:
    """What node ``node_rank`` of the point's job runs (``hostnames``: the job's nodes, in SLURM's
    order; ``address``: where they meet, ``first_node_address(hostnames[0])``; the name by default)."""
    if len(hostnames) != point.nodes:
        raise ValueError(
            f"the job has {len(hostnames)} nodes ({hostnames}), the point asked for {point.nodes}"
        )
    inner = [
        "--multirun",  # a one-point sweep in the outer sweep's folder: the same on every rank
        "hydra/launcher=basic",
        "~hydra.callbacks.sweep_parent",  # the outer sweep already made the MLflow parent run
        f"hydra.sweep.dir={point.sweep_dir}",
        f"hydra.sweep.subdir={point.job_num}",
    ]
    return [
        accelerate_executable(),
        "launch",
        "--config_file",
        point.config_file,
        "--num_processes",
        str(point.gpus_per_node * point.nodes),
        "--num_machines",
        str(point.nodes),
        "--machine_rank",
        str(node_rank),
        "--main_process_ip",
        address or hostnames[0],
        "--main_process_port",
        str(port),
        "-m",
        "limo_exp",
        "run",
        *inner,
        *point.overrides,
    ]


def cause(lines: list[str]) -> str:
    """The error a failed run printed last (a traceback's last line: ``pkg.Name: message``), else its
    last line: the inner exception, not the wrappers accelerate and torch's launcher print after it
    (nor what follows the first of them: torch's summary of a multi-process failure, ``Failures:``...)."""
    wrappers = ("CalledProcessError", "ChildFailedError")

    def exception(line: str):
        m = re.match(r"^([A-Za-z_][\w.]*)(:|$)", line.strip())
        return m.group(1) if m and m.group(1).rsplit(".", 1)[-1][:1].isupper() else None

    first_wrapper = next((i for i, ln in enumerate(lines) if (exception(ln) or "").endswith(wrappers)), None)
    for line in reversed(lines[:first_wrapper]):
        name = exception(line)
        if name and not name.endswith(wrappers):
            return line.strip()
    return next((ln.strip() for ln in reversed(lines) if ln.strip()), "no output")


def stop(launcher_pid: int) -> list[int]:
    """SIGTERM to the processes ``accelerate launch`` (``launcher_pid``) started, not to it: torch's
    launcher starts each rank in a session of its own, and when signalled itself it passes SIGTERM
    on and SIGKILLs the ranks 30 s later (torch < 2.12 has no setting), before a 32B state is
    saved. A rank that ends makes the launcher exit. Without children, its process group. Returns
    the pids signalled."""
    import signal

    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended while we looked
        if ppid == launcher_pid:
            kids.append(int(stat.parent.name))
    for pid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if not kids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher_pid, signal.SIGTERM)
    return kids
