"""The Hydra callback of every multirun: one parent MLflow run per sweep launch.

Created before the first job, closed after the last (FAILED if a child failed). Jobs (in this
process, joblib workers or SLURM tasks) find its id in the sweep folder.
"""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from limo_exp.config import TrackingConfig
from limo_exp.tracking.names import KIND_TAG
from limo_exp.tracking.run_log import git_info
from limo_exp.tracking.tracker import PARENT_FILE, Tracker, make_tracker


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        tracking = TrackingConfig.from_dict(OmegaConf.to_container(config.tracking, resolve=True), "tracking")
        if not tracking.enabled:
            return
        tracker = make_tracker(tracking)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        overrides = " ".join(config.hydra.overrides.task)
        tags = {KIND_TAG: "sweep", "limo.sweep_dir": str(sweep_dir), "limo.overrides": overrides}
        run_id = tracker.start(f"sweep {sweep_dir.name}", tags | git_info())
        (sweep_dir / PARENT_FILE).write_text(run_id)
        self._tracker = tracker

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        tracker: Tracker | None = getattr(self, "_tracker", None)
        if tracker is not None:
            tracker.end("FAILED" if tracker.failed_children(tracker.run_id) else "FINISHED")
