"""The Hydra callback of every multirun: one parent MLflow run per sweep launch.

Created before the first job, closed after the last (FAILED if a child failed, KILLED if one
was stopped). Named after the study and its swept axes; its params are the sweep's fixed
settings, its ``limo.swept.*`` tags the axes, its ``limo.child.<run key>`` tags every child run,
reused FINISHED ones included. Jobs (in this process, joblib workers or SLURM tasks) find its
id in the sweep folder.
"""

from __future__ import annotations

import atexit
import functools
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from limo_exp.config import TrackingConfig
from limo_exp.tracking.names import KIND_TAG
from limo_exp.tracking.run_log import git_info
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


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        check_topology(config)
        tracking = TrackingConfig.from_dict(OmegaConf.to_container(config.tracking, resolve=True), "tracking")
        if not tracking.enabled:
            return
        tracker = make_tracker(tracking)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        overrides = " ".join(config.hydra.overrides.task)
        axes = swept_axes(config)
        tags = {KIND_TAG: "sweep", "limo.sweep_dir": str(sweep_dir), "limo.overrides": overrides}
        tags |= {f"limo.swept.{k}": v for k, v in axes.items()}
        name = f"sweep {config.study}: " + ("; ".join(f"{k}={v}" for k, v in axes.items()) or sweep_dir.name)
        run_id = tracker.start(name[:250], tags | git_info())
        try:  # the sweep's fixed settings as params: everything but the swept axes and Hydra's own
            fixed = OmegaConf.to_container(
                OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]), resolve=True
            )
            tracker.log_params({k: v for k, v in flatten(fixed).items() if k not in axes})
        except Exception as e:  # an interpolation only a job can resolve: the tags still say what was swept
            log.warning("sweep parent: fixed params not logged (%s)", e)
        (sweep_dir / PARENT_FILE).write_text(run_id)
        self._tracker = tracker
        self._closer = functools.partial(_close_if_open, tracker)  # stopped before a job could mark it
        atexit.register(self._closer)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:  # not reached when a job raised
        tracker: Tracker | None = getattr(self, "_tracker", None)
        if tracker is None:
            return
        atexit.unregister(self._closer)
        if (Path(config.hydra.sweep.dir) / PARENT_FILE).exists():  # gone: nothing ran (commands.finished)
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
