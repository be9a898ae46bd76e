"""``hydra/launcher=slurm``: one multi-GPU, multi-node SLURM job per sweep point, every node running
``accelerate launch ... -m limo_exp run <the point's overrides>`` (the command: limo_exp.training.launch).

hydra-submitit-launcher (``pip install 'limo-exp[slurm]'``) submits the jobs and waits for them;
this subclass only changes what a job runs. Without that package this module defines nothing, so
Hydra's plugin scan stays quiet.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
except ImportError:  # the slurm extra is not installed
    BaseSubmititLauncher = None

if BaseSubmititLauncher is not None:

    class AccelerateSubmititLauncher(BaseSubmititLauncher):
        """Points are composed and their Accelerate topology written out before anything is submitted
        (a point without ``accelerate=<topology>`` fails here, not in the queue)."""

        _EXECUTOR = "slurm"

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            from omegaconf import OmegaConf

            from limo_exp.training import launch

            self.points: dict[int, launch.Point] = {}
            sweep_dir = str(self.config.hydra.sweep.dir)
            for k, overrides in enumerate(job_overrides):
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                point = launch.Point(
                    tuple(filter_overrides(list(overrides))),
                    sweep_dir,
                    initial_job_idx + k,
                    int(self.params.get("nodes") or 1),
                    int(self.params.get("gpus_per_node") or 1),
                )
                accelerate = (
                    OmegaConf.to_container(cfg.accelerate, resolve=True) if cfg.get("accelerate") else None
                )
                launch.write_topology(point, accelerate)
                self.points[point.job_num] = point
            return super().launch(job_overrides, initial_job_idx)

        def __call__(
            self,
            sweep_overrides: list[str],
            job_dir_key: str,
            job_num: int,
            job_id: str,
            singleton_state: Any,
        ) -> JobReturn:
            import submitit

            from limo_exp.training import launch

            env = submitit.JobEnvironment()
            cmd = launch.accelerate_command(
                self.points[job_num],
                node_rank=env.node,
                hostnames=env.hostnames,
                port=launch.port_for(env.job_id),
            )
            print(f"node {env.node} of job {env.job_id}:", " ".join(cmd), flush=True)  # in the job's .out log
            rc = subprocess.run(cmd).returncode
            ret = JobReturn(overrides=list(sweep_overrides), status=JobStatus.COMPLETED, _return_value=rc)
            if rc != 0:
                ret.status = JobStatus.FAILED
                ret._return_value = RuntimeError(f"accelerate launch exited {rc} on node {env.node}: {cmd}")
            return ret

    class SlurmAccelerateLauncher(AccelerateSubmititLauncher):
        _EXECUTOR = "slurm"

    class LocalAccelerateLauncher(AccelerateSubmititLauncher):
        """The same through submitit's local executor: one node, this machine (a check before a queue)."""

        _EXECUTOR = "local"
