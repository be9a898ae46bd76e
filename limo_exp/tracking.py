"""Tracking: the one module that talks to MLflow. The rest of the code calls a ``Tracker``.

Layout (shared/DESIGN.md): experiment = the study; one parent run per sweep launch, one
child run per configuration; params = the flattened resolved config; tags = run key, git,
versions, hardware; metrics ``train/...`` and ``eval/<task>/<metric>``; artifacts = config,
selected ids, curation reports, lm-eval results and per-sample outputs. ``NullTracker`` is the
no-op twin used when tracking is disabled and on non-zero ranks.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_KEY_TAG = "limo.run_key"
PARENT_FILE = ".mlflow_parent_run_id"
_BAD = re.compile(r"[^0-9A-Za-z_\-./ ]")


def metric_name(name: str) -> str:
    """MLflow rejects ``,`` ``:`` ``@`` (among others): ``exact_match,flexible`` -> ``exact_match/flexible``."""
    name = name.replace(",", "/").replace("@", "_at_").replace(":", "_")
    return _BAD.sub("_", name)


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = json.dumps(d) if isinstance(d, list) else str(d)
    return out


def git_info(path: Path | None = None) -> dict[str, str]:
    cwd = path or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, check=True
        )
        return {"git.commit": commit.stdout.strip(), "git.dirty": str(bool(dirty.stdout.strip())).lower()}
    except (OSError, subprocess.CalledProcessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}


def environment_tags() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    tags = {"hardware.platform": platform.platform(), "hardware.cpus": str(os.cpu_count())}
    for pkg in ("torch", "transformers", "accelerate", "lm-eval", "math-verify", "mlflow", "limo-exp"):
        try:
            tags[f"version.{pkg}"] = version(pkg)
        except PackageNotFoundError:
            tags[f"version.{pkg}"] = "absent"
    try:
        import torch

        if torch.cuda.is_available():
            tags["hardware.gpus"] = ", ".join(
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            )
        else:
            tags["hardware.gpus"] = "none"
    except ImportError:
        pass
    return tags | git_info()


class NullTracker:
    """Does nothing; same interface as ``Tracker``."""

    run_id: str | None = None

    def find_finished(self, run_key: str):
        return None

    @contextmanager
    def run(self, name: str, tags: dict[str, str] | None = None, parent_run_id: str | None = None):
        yield self

    def log_params(self, params: dict[str, str]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_json(self, obj: Any, name: str) -> None: ...
    def log_dataset(self, rows: list[dict], name: str, digest: str, context: str) -> None: ...


class Tracker(NullTracker):
    def __init__(self, uri: str, experiment: str, artifact_root: str | None = None):
        from mlflow.tracking import MlflowClient

        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            location = Path(artifact_root).resolve().as_uri() if artifact_root else None
            from mlflow.exceptions import MlflowException

            try:
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
            except MlflowException:  # created meanwhile by a parallel run of the same sweep
                self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        else:
            self.experiment_id = exp.experiment_id
        self.run_id = None

    def find_finished(self, run_key: str):
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' and attributes.status = 'FINISHED'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return runs[0] if runs else None

    def start(self, name: str, tags: dict[str, str] | None = None, parent_run_id: str | None = None) -> str:
        tags = dict(tags or {})
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        return self.run_id

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    @contextmanager
    def run(self, name: str, tags: dict[str, str] | None = None, parent_run_id: str | None = None):
        self.start(name, tags, parent_run_id)
        try:
            yield self
        except BaseException:
            self.end("FAILED")
            raise
        self.end("FINISHED")

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(metric_name(k), float(v), now, step or 0) for k, v in metrics.items() if v is not None
        ]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i : i + 500])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_json(self, obj: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / name
            p.write_text(json.dumps(obj, indent=2, default=str))
            self.log_artifact(p)

    def log_dataset(self, rows: list[dict], name: str, digest: str, context: str) -> None:
        """``mlflow.log_input``: the pool and the selected subset, with their digests."""
        import mlflow.data
        import pandas as pd
        from mlflow.entities import DatasetInput, InputTag

        ds = mlflow.data.from_pandas(pd.DataFrame(rows), name=name, digest=digest[:36])
        entity = ds._to_mlflow_entity()
        self.client.log_inputs(
            self.run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", context)])]
        )


def make_tracker(tracking_cfg) -> NullTracker:
    if not tracking_cfg.get("enabled", False):
        return NullTracker()
    return Tracker(tracking_cfg["uri"], tracking_cfg["experiment"], tracking_cfg.get("artifact_root"))


def parent_run_id(sweep_dir: str | Path | None) -> str | None:
    if sweep_dir is None:
        return None
    p = Path(sweep_dir) / PARENT_FILE
    return p.read_text().strip() if p.exists() else None


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object


def fail_parent(tracking_cfg, sweep_dir: str | Path | None) -> None:
    """A configuration of a sweep crashed: the sweep's parent run is FAILED too (Hydra stops there)."""
    run_id = parent_run_id(sweep_dir)
    if run_id and tracking_cfg.get("enabled", False):
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=tracking_cfg["uri"]).set_terminated(run_id, status="FAILED")


class SweepCallback(Callback):
    """One parent MLflow run per sweep launch: created before the first job, closed after the last.

    Jobs (in this process, joblib workers or SLURM tasks) find its id in the sweep folder.
    """

    def on_multirun_start(self, config, **kwargs) -> None:
        if not config.tracking.enabled:
            return
        from hydra.core.hydra_config import HydraConfig  # noqa: F401

        tracker = make_tracker(config.tracking)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        overrides = " ".join(config.hydra.overrides.task)
        run_id = tracker.start(
            f"sweep {sweep_dir.name}",
            {"limo.kind": "sweep", "limo.sweep_dir": str(sweep_dir), "limo.overrides": overrides}
            | git_info(),
        )
        (sweep_dir / PARENT_FILE).write_text(run_id)
        self._tracker = tracker

    def on_multirun_end(self, config, **kwargs) -> None:
        tracker = getattr(self, "_tracker", None)
        if tracker is not None:
            failed = tracker.client.search_runs(
                [tracker.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{tracker.run_id}' and attributes.status = 'FAILED'",
            )
            tracker.end("FAILED" if failed else "FINISHED")
