"""One multi-GPU, multi-node job per sweep point: the command every node of a SLURM job runs.

``limo-exp run --multirun ... hydra/launcher=slurm accelerate=fsdp`` submits one job per point
(hydra_plugins/limo_exp_launcher); each of its nodes runs

    accelerate launch --config_file <point>/accelerate.yaml --num_processes <gpus x nodes>
        --num_machines <nodes> --machine_rank <node> --main_process_ip <first host> --main_process_port <port>
        -m limo_exp run --multirun <the point's overrides> <the sweep's folder and number, no new parent run>

The Accelerate file is the point's ``accelerate`` group written out (conf/accelerate/<topology>.yaml
plus any ``accelerate.*`` override). The inner run is a one-point multirun in the sweep's own folder,
so every rank composes the same Hydra folder and the run joins the sweep's MLflow parent run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TOPOLOGIES = "accelerate=ddp|fsdp|deepspeed_zero3 (conf/accelerate/)"


@dataclass(frozen=True)
class Point:
    """A sweep point as its job needs it: overrides, where its files go, the hardware it asked for."""

    overrides: tuple[str, ...]  # the point's task overrides (no hydra.* ones)
    sweep_dir: str
    job_num: int
    nodes: int
    gpus_per_node: int

    @property
    def config_file(self) -> str:
        return str(Path(self.sweep_dir) / str(self.job_num) / "accelerate.yaml")


def write_topology(point: Point, accelerate: dict[str, Any] | None) -> str:
    """Write the point's Accelerate topology (its ``accelerate`` group) where its job reads it."""
    if not accelerate:
        raise ValueError(f"a SLURM point runs under accelerate launch: choose its topology, {TOPOLOGIES}")
    path = Path(point.config_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(accelerate), sort_keys=False))
    return str(path)


def port_for(job_id: str | int, base: int = 20000, span: int = 20000) -> int:
    """The rendezvous port of a job: the same on its every node, different for neighbouring jobs."""
    digits = "".join(c for c in str(job_id) if c.isdigit()) or "0"
    return base + int(digits) % span


def accelerate_command(point: Point, *, node_rank: int, hostnames: list[str], port: int) -> list[str]:
    """What node ``node_rank`` of the point's job runs (``hostnames``: the job's nodes, in SLURM's order)."""
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
        "accelerate",
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
        hostnames[0],
        "--main_process_port",
        str(port),
        "-m",
        "limo_exp",
        "run",
        *inner,
        *point.overrides,
    ]
