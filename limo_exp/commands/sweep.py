"""The Hydra callback of every multirun: one parent MLflow run per sweep launch.

Created before the first job, closed after the last (FAILED if a child failed, KILLED if one
was stopped). Named after the study, the model and its swept axes; its params are the swept axes
with their values, then the settings every child shares; its ``limo.swept.*`` tags the axes, its
``limo.child.<run key>`` tags every child run, reused FINISHED ones included. At the end it logs a
summary: a table of its children (name, run id, status, headline accuracies) and the best child's
``<benchmark>/accuracy``. Jobs (in this process, joblib workers or SLURM tasks) find its id, and
the swept axes they name their runs by, in the sweep folder.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from limo_exp.config import TrackingConfig
from limo_exp.tracking.names import KIND_TAG, SWEPT_FILE, SWEPT_TAG
from limo_exp.tracking.run_log import NOT_RUN_PARAMS, git_info, relative
from limo_exp.tracking.sweep_log import log_sweep_summary
from limo_exp.tracking.tracker import PARENT_FILE, Tracker, make_tracker
from limo_exp.typed import flatten

log = logging.getLogger(__name__)


def swept_axes(config: DictConfig) -> dict[str, str]:
    """The axes a multirun sweeps: the sweeper's params (a sweep file) and comma lists on the
    command line (``data.n_samples=8,16,32``)."""
    axes = {str(k): str(v) for k, v in (OmegaConf.select(config, "hydra.sweeper.params") or {}).items()}
    for o in OmegaConf.select(config, "hydra.overrides.task") or []:
        key, _, value = str(o).partition("=")
        if "," in value and not value.startswith(("[", "{", "'", '"')):
            axes[key.lstrip("+~")] = value
    return axes


def topology_error() -> str:
    from limo_exp import CONF_DIR

    names = "|".join(sorted(p.stem for p in (Path(CONF_DIR) / "accelerate").glob("*.yaml")))
    return f"a SLURM point runs under accelerate launch: choose its topology, accelerate={names} (conf/accelerate/)"


def check_topology(config: DictConfig) -> None:
    """A sweep on the SLURM launcher names an Accelerate topology (fixed or swept): checked before
    its parent run is created or anything is queued."""
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
    swept = any(
        str(o).startswith("accelerate=") for o in OmegaConf.select(config, "hydra.overrides.task") or []
    )
    if launcher.endswith("AccelerateLauncher") and not config.get("accelerate") and not swept:
        # SystemExit, not ConfigError: Hydra turns a callback's Exception into a warning and goes on
        raise SystemExit(f"limo-exp: config error: {topology_error()}")


def parent_name(config: DictConfig, axes: dict[str, str], fallback: str) -> str:
    """``<study> · <model> · quality=short,answer_only; data.n_samples=8,16``: the study, the model
    (unless swept), what the sweep varies."""
    model = OmegaConf.select(config, "model.name", throw_on_resolution_failure=False)
    parts = [str(config.study)] + ([str(model)] if model and "model" not in axes else [])
    parts.append("; ".join(f"{k}={v}" for k, v in axes.items()) or fallback)
    return " · ".join(parts)[:250]


def shared_params(params: dict[str, str], axes: dict[str, str]) -> dict[str, str]:
    """The params every child of a sweep shares: all but the swept axes and the leaves under a
    swept group (``quality=short,long``: every ``quality.*``)."""
    return {k: v for k, v in params.items() if not any(k == a or k.startswith(f"{a}.") for a in axes)}


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        check_topology(config)
        from limo_exp.commands.plan import plan_sweep

        plan_files = plan_sweep(config)  # its one line printed; over plan.max_gpu_hours: refused here
        tracking = TrackingConfig.from_dict(OmegaConf.to_container(config.tracking, resolve=True), "tracking")
        if not tracking.enabled:
            return
        tracker = make_tracker(tracking)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        overrides = " ".join(config.hydra.overrides.task)
        axes = swept_axes(config)
        where = relative(sweep_dir, OmegaConf.select(config, "paths.output_root") or ".")  # no home dir
        tags = {KIND_TAG: "sweep", "limo.sweep_dir": where, "limo.overrides": overrides}
        tags |= {f"{SWEPT_TAG}{k}": v for k, v in axes.items()}
        run_id = tracker.start(parent_name(config, axes, sweep_dir.name), tags | git_info())
        tracker.log_params(axes)  # the swept axes first, each with its values ("8,16")
        try:  # then what every child shares: all but the swept axes (and under them), Hydra's own
            fixed = OmegaConf.to_container(
                OmegaConf.masked_copy(config, [k for k in config if k not in NOT_RUN_PARAMS]), resolve=True
            )
            tracker.log_params(shared_params(flatten(fixed), axes))
        except Exception as e:  # an interpolation only a job can resolve: the tags still say what was swept
            log.warning("sweep parent: fixed params not logged (%s)", e)
        (sweep_dir / SWEPT_FILE).write_text(json.dumps(list(axes)))  # its jobs name their runs by them
        (sweep_dir / PARENT_FILE).write_text(run_id)
        for f in plan_files:
            tracker.log_artifact(f, "plan")
        self._tracker = tracker
        self._closer = functools.partial(_close_if_open, tracker)  # stopped before a job could mark it
        atexit.register(self._closer)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:  # not reached when a job raised
        tracker: Tracker | None = getattr(self, "_tracker", None)
        if tracker is None:
            return
        atexit.unregister(self._closer)
        if (Path(config.hydra.sweep.dir) / PARENT_FILE).exists():  # gone: nothing ran (commands.finished)
            try:  # the children at a glance: a table, the best headline accuracy
                log_sweep_summary(tracker, tracker.run_id)
            except Exception as e:  # a summary never keeps the parent from closing
                log.warning("sweep parent %s: no summary (%s)", tracker.run_id, e)
            tracker.end("FAILED" if tracker.failed_children(tracker.run_id) else "FINISHED")


def _close_if_open(tracker: Tracker) -> None:
    """At exit: a parent still RUNNING was left by a stop (or a crash) between its creation and a
    job's own error handling, e.g. a Ctrl-C while the first job starts: KILLED (FAILED)."""
    from limo_exp.commands.common import stopped_by_signal

    try:
        if tracker.client.get_run(tracker.run_id).info.status == "RUNNING":
            tracker.end("KILLED" if stopped_by_signal() else "FAILED")
    except Exception as e:  # the store may be gone at exit: say so, never raise there
        log.warning("sweep parent %s: not closed at exit (%s)", tracker.run_id, e)
