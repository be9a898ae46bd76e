"""Which points of a sweep already ran: checked in the launching process, before anything is
queued (``hydra/launcher=slurm``), so that a relaunch submits only what is left."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from limo_exp.commands.common import parse
from limo_exp.config import TrackingConfig
from limo_exp.tracking import run_log
from limo_exp.tracking.tracker import PARENT_FILE, make_tracker, parent_run_id

log = logging.getLogger(__name__)


def finished_points(cfgs: list[DictConfig], sweep_dir: str | Path) -> list[str | None]:
    """Per point, the MLflow run id of a FINISHED run with its run key (``force=true``: none), else
    None. Found ones are listed on the sweep's parent run as reused children; when every point is
    found, the parent run this launch created is deleted (it would hold nothing)."""
    from limo_exp.commands.prepare import identify

    found: list[str | None] = []
    tracker = None
    for cfg in cfgs:
        spec = parse(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))  # no job number yet
        c = spec.config
        if not c.tracking.enabled or c.force:
            found.append(None)
            continue
        tracker = tracker or make_tracker(c.tracking)
        key = identify(spec).key
        done = tracker.find_finished(key)
        found.append(done.run_id if done else None)
        if done:
            run_log.link_child(tracker, parent_run_id(sweep_dir), key, done.run_id)
    parent = parent_run_id(sweep_dir)
    if cfgs and parent and all(found):
        tracking = TrackingConfig.from_dict(
            OmegaConf.to_container(cfgs[0].tracking, resolve=True), "tracking"
        )
        make_tracker(tracking).client.delete_run(parent)  # nothing to run: no empty parent
        (Path(sweep_dir) / PARENT_FILE).unlink(missing_ok=True)
        log.info("every point of the sweep is already FINISHED: nothing submitted, no parent run kept")
    return found
