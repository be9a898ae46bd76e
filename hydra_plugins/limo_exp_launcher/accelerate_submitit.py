"""``hydra/launcher=slurm`` (and ``slurm_cpu``): one SLURM job per sweep point, every node running
``accelerate launch ... -m limo_exp run <the point's overrides>`` (the command: ``points``).

hydra-submitit-launcher (``pip install 'limo-exp[slurm]'``) provides the executor. This subclass:
- composes every point in the launching process first: its Accelerate topology is written out
  (none: one clear error) and a point whose run key is already FINISHED in the store is not
  submitted at all (a relaunch queues only what is left);
- runs the venv's own ``accelerate`` in the job, forwards SLURM's signals to it (the time-limit
  warning SIGUSR2 and SIGTERM: the run saves its state and ends KILLED; on the warning the job is
  then requeued, up to ``max_num_timeout`` times, and resumes), and fails the job (non-zero exit)
  when the point fails, naming the cause and the job's log, which it attaches to the point's run;
- prints one line per point when the sweep ends: FINISHED / skipped / FAILED / KILLED, run id, log.
Without hydra-submitit-launcher this module defines nothing, so Hydra's plugin scan stays quiet.
"""

from __future__ import annotations

import collections
import logging
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides

from hydra_plugins.limo_exp_launcher import points

log = logging.getLogger(__name__)

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
except ImportError:  # the slurm extra is not installed
    BaseSubmititLauncher = None

FORWARDED = (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)


def _attach_log(point: points.Point, log_path: str, why: str) -> str | None:
    """Tag the point's MLflow run with the cause and attach the job's log; returns the run id."""
    run_file = point.dir / points.RUN_ID_FILE
    if not run_file.exists() or not point.tracking.get("enabled", True):
        return None
    run_id = run_file.read_text().strip()
    try:
        from limo_exp.config import TrackingConfig
        from limo_exp.tracking.tracker import make_tracker

        tracker = make_tracker(TrackingConfig.from_dict(point.tracking, "tracking"))
        tracker.client.set_tag(run_id, "limo.error", why[:5000])
        if Path(log_path).exists():
            tracker.client.log_artifact(run_id, log_path, "logs")
    except Exception as e:  # the cause is still printed; the store may be unreachable from a node
        print(f"could not attach the log to run {run_id}: {e}", file=sys.stderr)
    return run_id


def watch_without_accounting() -> None:
    """submitit reads job states with ``sacct``; on a cluster without accounting that fails at every
    poll (a warning each time) and a job that died without a result would be waited for forever.
    There, states come from ``squeue -t all`` (which knows jobs for MinJobAge after they end)."""
    from submitit.slurm import slurm

    if getattr(slurm.SlurmJob.watcher, "limo_squeue", False):
        return
    if shutil.which("sacct") is None:  # a client without the accounting command: no accounting
        why = "no sacct on PATH"
    else:
        probe = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, text=True)
        if probe.returncode == 0:
            return
        why = "sacct: " + (probe.stderr.strip() or "failed")

    class SqueueWatcher(slurm.SlurmInfoWatcher):
        limo_squeue = True

        def _make_command(self):
            ids = sorted({x.split("_")[0] for x in self._registered - self._finished})
            if not ids:
                return None
            query = f"squeue -h -t all -o '%i|%T|%N' -j {','.join(ids)}"
            return ["sh", "-c", f"echo 'JobID|State|NodeList'; {query}"]

    slurm.SlurmJob.watcher = SqueueWatcher(delay_s=slurm.SlurmJob.watcher._delay_s)
    print(f"SLURM accounting is off ({why}): job states from squeue")


def require_slurm_client() -> None:
    """One line, before anything is submitted, where this machine cannot submit to SLURM at all."""
    missing = [c for c in ("sbatch", "squeue") if shutil.which(c) is None]
    if missing:
        raise SystemExit(
            f"limo-exp: this machine has no SLURM client ({' and '.join(missing)} not on PATH): launch "
            "the sweep from a cluster's login node, or run it here with hydra/launcher=basic or joblib"
        )


def refused(e: Exception):
    """sbatch's refusal as one line naming the settings to change (no traceback of Hydra's)."""
    text = str(e)
    line = next((ln.strip() for ln in text.splitlines() if "error" in ln.lower()), text.strip()[:300])
    raise SystemExit(
        f"limo-exp: SLURM refused the sweep's jobs: {line}. Set hydra.launcher.partition / gpus_per_node / "
        "cpus_per_task / mem_gb / timeout_min to what the cluster offers (a CPU partition: "
        "hydra/launcher=slurm_cpu); see conf/hydra/launcher/slurm.yaml"
    ) from None


if BaseSubmititLauncher is not None:

    class AccelerateSubmititLauncher(BaseSubmititLauncher):
        _EXECUTOR = "slurm"

        # --- in the launching process ---------------------------------------------------------
        def _compose(self, job_overrides, initial_job_idx) -> list[tuple[points.Point, Any]]:
            from omegaconf import OmegaConf

            sweep_dir = str(self.config.hydra.sweep.dir)
            composed = []
            for k, overrides in enumerate(job_overrides):
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                tracking = OmegaConf.to_container(cfg.tracking, resolve=True) if cfg.get("tracking") else {}
                point = points.Point(
                    tuple(filter_overrides(list(overrides))),
                    sweep_dir,
                    initial_job_idx + k,
                    int(self.params.get("nodes") or 1),
                    int(self.params.get("gpus_per_node") or 1),
                    tracking,
                )
                accelerate = (
                    OmegaConf.to_container(cfg.accelerate, resolve=True) if cfg.get("accelerate") else None
                )
                points.write_topology(point, accelerate)
                composed.append((point, cfg))
            return composed

        def _executor(self):
            import submitit
            from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
            from omegaconf import OmegaConf

            init = {"folder": self.params["submitit_folder"]}
            if "max_num_timeout" in self.params:
                init[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
            executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
            base = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(
                **{
                    (k if k in base else f"{self._EXECUTOR}_{k}"): v
                    for k, v in self.params.items()
                    if k not in ("submitit_folder", "max_num_timeout")
                }
            )
            return executor

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            from limo_exp.commands.finished import finished_points

            composed = self._compose(job_overrides, initial_job_idx)
            self.points = {p.job_num: p for p, _ in composed}
            done = finished_points([cfg for _, cfg in composed], self.config.hydra.sweep.dir)
            todo = [(p, list(o)) for (p, _), o, d in zip(composed, job_overrides, done) if d is None]
            rows, returns = {}, {}
            for (p, _), o, d in zip(composed, job_overrides, done):
                if d is not None:
                    rows[p.job_num] = ("skipped", d, "FINISHED before: not submitted")
                    returns[p.job_num] = JobReturn(
                        overrides=list(o), status=JobStatus.COMPLETED, _return_value=None
                    )
            if todo:
                Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
                if self._EXECUTOR == "slurm":
                    require_slurm_client()
                    watch_without_accounting()
                params = [
                    (o, "hydra.sweep.dir", p.job_num, f"job_id_for_{p.job_num}", Singleton.get_state())
                    for p, o in todo
                ]
                try:
                    jobs = self._executor().map_array(self, *zip(*params))
                except Exception as e:  # sbatch refused: partition, gres, memory, time limit
                    refused(e)
                for (p, o), job in zip(todo, jobs):
                    returns[p.job_num], rows[p.job_num] = self._collect(p, o, job)
            self._summary(composed, rows)
            bad = [n for n, (state, _, _) in rows.items() if state in ("FAILED", "KILLED")]
            if bad:  # the summary says why; no traceback of Hydra's (the parent run ends FAILED at exit)
                print(
                    f"{len(bad)} of {len(composed)} point(s) did not finish: #{', #'.join(map(str, bad))}",
                    file=sys.stderr,
                )
                raise SystemExit(1)
            return [returns[p.job_num] for p, _ in composed]

        def _collect(self, p: points.Point, overrides, job):
            run_file = p.dir / points.RUN_ID_FILE
            log_path = str(job.paths.stderr).replace("%t", "0")
            try:
                ret, state, why = job.results()[0], "FINISHED", ""
            except Exception as e:  # the job failed (it raised, or SLURM ended it)
                text = str(e)
                m = re.search(r"failed on node \d+(?: \(run \w+\))?: (.*); log: (\S+)", text)
                why = m.group(1) if m else points.cause(text.splitlines())
                ret = JobReturn(
                    overrides=list(overrides), status=JobStatus.FAILED, _return_value=RuntimeError(why)
                )
                ended = job.state in ("TIMEOUT", "CANCELLED", "PREEMPTED", "NODE_FAIL")
                state = "KILLED" if ended or why.startswith("stopped by ") else "FAILED"
                why = why or f"SLURM state {job.state}"
            run_id = run_file.read_text().strip() if run_file.exists() else "-"
            return ret, (state, run_id, (f"{why}; " if why else "") + f"log: {log_path}")

        @staticmethod
        def _summary(composed, rows) -> None:
            print(f"\nsweep of {len(composed)} point(s):", flush=True)
            for p, _ in composed:
                state, run_id, note = rows[p.job_num]
                print(f"  #{p.job_num} {' '.join(p.overrides)}: {state}, run {run_id}; {note}", flush=True)

        # --- in the job -----------------------------------------------------------------------
        def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state) -> JobReturn:
            import submitit

            env = submitit.JobEnvironment()
            point = self.points[job_num]
            cmd = points.accelerate_command(
                point,
                node_rank=env.node,
                hostnames=env.hostnames,
                port=points.port_for(env.job_id),
                address=points.first_node_address(env.hostnames[0]),
            )
            log_path = str(env.paths.stderr).replace("%t", str(env.global_rank))
            print(f"node {env.node} of job {env.job_id}:", " ".join(cmd), flush=True)  # in the job's .out log
            rc, tail, came = self._run_forwarding(cmd)
            note = ""
            if came == signal.SIGUSR2 and env.global_rank == 0:  # SLURM's time-limit (or preemption) warning
                requeue = self._previous.get(signal.SIGUSR2)  # submitit's: requeue, up to max_num_timeout
                if callable(requeue):
                    try:
                        requeue(signal.SIGUSR2, None)  # requeued: the job exits here, and resumes
                    except Exception as e:
                        note = f"; {e}"
            if rc != 0:
                why = points.cause(tail)
                if came:
                    name = signal.Signals(came).name
                    why = f"stopped by {name}: its state saved, it ended KILLED; a relaunch resumes{note}"
                run_id = _attach_log(point, log_path, why) if env.node == 0 else None
                raise RuntimeError(
                    f"point #{job_num} ({' '.join(point.overrides)}) failed on node {env.node}"
                    f"{' (run ' + run_id + ')' if run_id else ''}: {why}; log: {log_path}"
                )
            return JobReturn(overrides=list(sweep_overrides), status=JobStatus.COMPLETED, _return_value=rc)

        def _run_forwarding(self, cmd: list[str]) -> tuple[int, list[str], int | None]:
            """Run ``cmd``; its stderr goes on to the job's log and its last lines are kept; SLURM's
            signals reach it as SIGTERM (the run saves and ends KILLED)."""
            # a session of its own; a stop goes to the processes accelerate started (points.stop)
            proc = subprocess.Popen(
                cmd, stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True
            )
            came: list[int] = []

            def forward(signum, frame):
                came.append(signum)
                points.stop(proc.pid)

            self._previous = {s: signal.signal(s, forward) for s in FORWARDED}
            tail: collections.deque[str] = collections.deque(maxlen=200)
            try:
                for line in proc.stderr:
                    sys.stderr.write(line)
                    tail.append(line)
                rc = proc.wait()
            finally:
                for s, h in self._previous.items():
                    signal.signal(s, h if h is not None else signal.SIG_DFL)
                sys.stderr.flush()
            return rc, list(tail), came[0] if came else None

    class SlurmAccelerateLauncher(AccelerateSubmititLauncher):
        _EXECUTOR = "slurm"

    class LocalAccelerateLauncher(AccelerateSubmititLauncher):
        """The same through submitit's local executor: one node, this machine (a check before a queue)."""

        _EXECUTOR = "local"
