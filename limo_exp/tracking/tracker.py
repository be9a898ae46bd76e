"""The module that talks to MLflow (with ``store.py``: opening a store, dataset sources). The
rest of the code calls a ``Tracker``.

Layout (shared/DESIGN.md): experiment = the study; one parent run per sweep launch, one
child run per configuration; params = the flattened resolved config; tags = run key, run kind,
git, versions, hardware; metrics ``<benchmark>/accuracy`` (the headline), ``train/...`` and
``eval/<task>/<metric>`` (names.py); artifacts = config, selected ids, curation reports, lm-eval
results and per-sample outputs. The experiment is tagged as training runs (MLflow 3's UI).
``NullTracker`` is the no-op twin used when tracking is disabled and on non-zero ranks.
Runs come back as plain ``TrackedRun`` records, never as MLflow objects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

from limo_exp.config import TrackingConfig
from limo_exp.tracking.names import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    RUN_KEY_TAG,
    VIEW_TAG,
    mask,
    safe_metric,
)
from limo_exp.tracking.protocol import NullTracker, RunTracker, TrackedRun  # noqa: F401  (importable here)
from limo_exp.tracking.store import dataset_source, open_checked, store_lock

log = logging.getLogger(__name__)

PARENT_FILE = ".mlflow_parent_run_id"


def _record(r) -> TrackedRun:
    return TrackedRun(
        r.info.run_id,
        r.info.run_name or "",
        r.info.status,
        r.info.start_time or 0,
        dict(r.data.tags),
        dict(r.data.params),
        dict(r.data.metrics),
    )


class Tracker(NullTracker):
    def __init__(
        self,
        uri: str,
        experiment: str,
        artifact_root: str | None = None,
        create: bool = True,
        system_metrics: float | None = None,
    ):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        if mask(uri) != uri:  # MLflow prints "View run at <host>" with the URI's user info: a password
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.system_metrics = system_metrics  # seconds between samples of system/* metrics; None: off
        with store_lock(uri):  # a new SQLite store is set up by one process; the others wait
            self.client = open_checked(lambda: MlflowClient(tracking_uri=uri), uri)
            exp = open_checked(lambda: self.client.get_experiment_by_name(experiment), uri)
            if exp is None and not create:
                raise SystemExit(f"no MLflow experiment {experiment!r} in {mask(uri)}: run the study first")
            if exp is None:
                location = Path(artifact_root).resolve().as_uri() if artifact_root else None
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
                )
            else:
                self.experiment_id = exp.experiment_id
                if create and EXPERIMENT_KIND_TAG not in exp.tags:  # a study begun before the tag
                    self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        self.run_id = None

    def search(self, filter_string: str = "", max_results: int = 50000) -> list[TrackedRun]:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=filter_string,
            max_results=max_results,
            order_by=["attributes.start_time DESC"],
        )
        return [_record(r) for r in runs]

    def find_finished(self, run_key: str) -> TrackedRun | None:
        found = self.search(
            f"tags.`{RUN_KEY_TAG}` = '{run_key}' and attributes.status = 'FINISHED'", max_results=1
        )
        return found[0] if found else None

    def start(self, name: str, tags: dict[str, str] | None = None, parent_run_id: str | None = None) -> str:
        tags = {k: mask(str(v), k) for k, v in (tags or {}).items()}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        return self.run_id

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    @contextmanager
    def run(self, name: str, tags: dict[str, str] | None = None, parent_run_id: str | None = None):
        """A run that ends FINISHED, FAILED on an error, or KILLED when the process is stopped
        (SIGTERM turned into SystemExit, Ctrl-C): never left RUNNING by anything but SIGKILL."""
        self.start(name, tags, parent_run_id)
        monitor = self._monitor()
        try:
            yield self
        except (KeyboardInterrupt, SystemExit):
            if monitor is not None:  # stop sampling, but never wait for its thread on the way out
                monitor._shutdown_event.set()
                monitor = None
            self.end("KILLED")
            raise
        except BaseException as e:
            with contextlib.suppress(Exception):  # what failed, on the run itself (its first line)
                self.set_tags({"limo.error": f"{type(e).__module__}.{type(e).__qualname__}: {e}"[:5000]})
            self.end("FAILED")
            raise
        finally:
            if monitor is not None:
                monitor.finish()
        self.end("FINISHED")

    def _monitor(self):
        """MLflow's system metrics (system/cpu_utilization_percentage, memory, GPU) for this run."""
        if not self.system_metrics:
            return None
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            self.run_id, sampling_interval=self.system_metrics, tracking_uri=self.uri
        )
        monitor.start()
        return monitor

    def log_model(self, checkpoint: str | Path, how: str) -> None:
        """The final checkpoint as an MLflow model under ``model/``: its files (``folder``) or
        MLflow's transformers flavour read from the checkpoint folder, without loading it."""
        if how == "folder":
            self.log_artifact(checkpoint, "model")
            return
        import mlflow

        mlflow.set_tracking_uri(self.uri)  # the fluent API below reads the global store
        with mlflow.start_run(run_id=self.run_id):
            mlflow.transformers.log_model(
                transformers_model=str(checkpoint), name="model", task="text-generation"
            )

    def close_unfinished(self, run_key: str) -> list[str]:
        """Mark the RUNNING runs of ``run_key`` KILLED (their process died: SIGKILL, a lost node)
        and return the ids of every earlier unfinished attempt, newest first. Call it only while
        holding the run's lock, so that no live process owns them."""
        runs = self.search(f"tags.`{RUN_KEY_TAG}` = '{run_key}' and attributes.status != 'FINISHED'")
        for r in runs:
            if r.status == "RUNNING":
                self.client.set_terminated(r.run_id, status="KILLED")
        return [r.run_id for r in runs]

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, mask(str(v), k)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(
        self, metrics: dict[str, float], step: int | None = None, run_id: str | None = None
    ) -> None:
        """Metrics of this run (or of ``run_id``), under MLflow-safe names, in the order given."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(safe_metric(k), float(v), now, step or 0) for k, v in metrics.items() if v is not None
        ]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id or self.run_id, metrics=items[i : i + 500])

    def set_tags(self, tags: dict[str, str], run_id: str | None = None) -> None:
        """Tags on this run (or on ``run_id``); secret-looking values are masked."""
        from mlflow.entities import RunTag

        items = [RunTag(k, mask(str(v), k)[:5000]) for k, v in tags.items()]
        self.client.log_batch(run_id or self.run_id, tags=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_table(self, rows: list[dict], artifact_file: str, run_id: str | None = None) -> None:
        """Rows as an MLflow table artifact (``log_table``: a JSON file the UI shows as a table)."""
        import pandas as pd

        self.client.log_table(run_id or self.run_id, pd.DataFrame(rows), artifact_file)

    def log_dataset(self, rows: list[dict], name: str, digest: str, context: str, origin=None) -> None:
        """``mlflow.log_input``: the pool and the selected subset, with their digests and their
        source (``origin``: ``pools.pool_origin``: a hub data set at a commit, a file, a generator)."""
        import mlflow.data
        import pandas as pd
        from mlflow.entities import DatasetInput, InputTag

        ds = mlflow.data.from_pandas(
            pd.DataFrame(rows), source=dataset_source(origin), name=name, digest=digest[:36]
        )
        entity = ds._to_mlflow_entity()
        self.client.log_inputs(
            self.run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", context)])]
        )

    def add_to_view(self, metrics: list[str], params: list[str]) -> None:
        """Add columns to the experiment's saved runs-table view ``names.VIEW`` (an experiment tag the
        UI reads: ``#/experiments/<id>/runs?viewStateShareKey=limo``); columns already there stay."""
        import json

        tags = self.client.get_experiment(self.experiment_id).tags
        try:
            state = json.loads(tags.get(VIEW_TAG) or "{}")
        except ValueError:  # edited by hand into something else: start again
            state = {}
        columns = list(state.get("selectedColumns") or [])
        wanted = [f"metrics.`{m}`" for m in metrics] + [f"params.`{p}`" for p in params]
        added = [c for c in wanted if c not in columns]
        if added:  # (column widths: a shared view's are not applied by MLflow 3.17's UI)
            state["selectedColumns"] = columns + added
            self.client.set_experiment_tag(self.experiment_id, VIEW_TAG, json.dumps(state))

    def get(self, run_id: str) -> TrackedRun:
        from mlflow.exceptions import MlflowException

        try:
            return _record(self.client.get_run(run_id))
        except MlflowException as e:
            raise SystemExit(f"no run {run_id!r} in {self.uri}") from e

    def download(self, run_id: str, folder: str, dst: str | Path) -> list[Path]:
        """The run's artifacts under ``folder`` (one level), copied into ``dst``."""
        import os

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file otherwise
        paths = [a.path for a in self.client.list_artifacts(run_id, folder) if not a.is_dir]
        Path(dst).mkdir(parents=True, exist_ok=True)
        return [Path(self.client.download_artifacts(run_id, p, str(dst))) for p in paths]

    def failed_children(self, parent_run_id: str) -> list[TrackedRun]:
        return self.search(f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'FAILED'")


def make_tracker(tracking: TrackingConfig) -> NullTracker:
    if not tracking.enabled:
        return NullTracker()
    if not tracking.uri:
        raise ValueError("tracking.enabled is true but tracking.uri is not set")
    return Tracker(
        tracking.uri, tracking.experiment, tracking.artifact_root, system_metrics=tracking.system_metrics
    )


def parent_run_id(sweep_dir: str | Path | None) -> str | None:
    if sweep_dir is None:
        return None
    p = Path(sweep_dir) / PARENT_FILE
    return p.read_text().strip() if p.exists() else None


def fail_parent(tracking: TrackingConfig, sweep_dir: str | Path | None, status: str = "FAILED") -> None:
    """A configuration of a sweep crashed (FAILED) or was stopped (KILLED: SIGTERM, Ctrl-C): the
    sweep's parent run ends the same way (Hydra stops there)."""
    run_id = parent_run_id(sweep_dir)
    if run_id and tracking.enabled:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=tracking.uri).set_terminated(run_id, status=status)
