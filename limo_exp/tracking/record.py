"""A run's record read back from any MLflow store the user can reach (a SQLite file, a folder, a
server): its config.yaml, tags, params, datasets, environment.txt, selected ids, the rows it trained
on, its loss curve and graded samples. What ``limo-exp reproduce`` and ``limo-exp diff`` read; with
``tracker.py`` and ``store.py`` the only modules that import mlflow (lazily).

    store = RecordStore("sqlite:////abs/outputs/mlruns.db")     # checked before MLflow opens it
    rec = store.record("3f8e9c7d4d7a4102a5a03f5c7b79fad6")       # or a run key (20 hex)
    rec.missing()                                               # what a run from before a record existed lacks

A store that cannot be reached, an unknown run id or key: one line (SystemExit), nothing written
(a SQLite file that is not there is not created; artifacts are read into a temporary folder).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from limo_exp.tracking.environment import ENVIRONMENT_FILE
from limo_exp.tracking.names import RUN_KEY_TAG, TRAINING_ROWS, mask
from limo_exp.tracking.protocol import TrackedRun

RUN_ID = re.compile(r"[0-9a-f]{32}")
RUN_KEY = re.compile(r"[0-9a-f]{20}")
# what a complete record holds, and what lacking it costs
PARTS = {
    "config.yaml": "the resolved config: nothing to rerun",
    ENVIRONMENT_FILE: "every installed distribution: only version.* tags of 7 packages to compare",
    "selected_ids.json": "the selected ids: the selection cannot be checked",
    TRAINING_ROWS: "the texts trained on: a changed training row cannot be named",
    "limo.pool_fingerprint": "the pool's fingerprint: the pool cannot be checked",
}


@dataclass
class Dataset:
    """One ``mlflow.log_input`` of a run: ``pool``, ``training`` or ``evaluation`` (``eval/<benchmark>``)."""

    name: str
    digest: str
    context: str
    source: str = ""


@dataclass
class RunRecord:
    run: TrackedRun
    experiment: str
    uri: str
    artifacts: list[str] = field(default_factory=list)  # the run's top-level artifact names
    config: dict | None = None
    environment: dict[str, str] | None = None  # name -> version (environment.txt)
    selected_ids: list[str] | None = None
    training_rows: list[dict] | None = None
    datasets: list[Dataset] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # train/loss by step

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def tags(self) -> dict[str, str]:
        return self.run.tags

    def dataset(self, context: str, name: str | None = None) -> Dataset | None:
        return next((d for d in self.datasets if d.context == context and name in (None, d.name)), None)

    def missing(self) -> dict[str, str]:
        """The parts of a full record this run lacks (a run logged before they existed) -> what it costs."""
        have = set(self.artifacts) | set(self.tags)
        return {part: why for part, why in PARTS.items() if part not in have}


def parse_environment(text: str) -> dict[str, str]:
    """``environment.txt`` (``name==version`` lines) -> {name: version}."""
    out = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            out[name] = version
    return out


def check_reachable(uri: str) -> None:
    """One line for a store that is not there, before MLflow opens it (which would create an empty
    SQLite file, or retry a dead server for minutes)."""
    where = mask(uri)
    if uri.startswith("sqlite:///"):
        db = uri[len("sqlite:///") :]
        if not Path(db).is_file():
            raise SystemExit(
                f"no MLflow store at {db} (tracking.uri={where}): set tracking.uri to the run's store"
            )
    elif uri.startswith(("http://", "https://")):
        import base64

        u = urllib.parse.urlsplit(uri)
        health = u._replace(netloc=u.netloc.rpartition("@")[2]).geturl().rstrip("/") + "/health"
        request = urllib.request.Request(health)
        if u.username:  # credentials in the URI: basic auth, as MLflow's client sends them
            token = base64.b64encode(f"{u.username}:{u.password or ''}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            urllib.request.urlopen(request, timeout=float(os.environ.get("LIMO_PROBE_S", 5)))
        except OSError as e:
            reason = getattr(e, "reason", e)
            raise SystemExit(f"the MLflow tracking server at {where} cannot be reached: {reason}") from None
    elif not Path(uri.removeprefix("file://")).is_dir():
        raise SystemExit(f"no MLflow store at {uri} (tracking.uri): set tracking.uri to the run's store")


class RecordStore:
    """Reads runs of every experiment of one store: by run id or by run key (its latest FINISHED run)."""

    def __init__(self, uri: str):
        from mlflow.tracking import MlflowClient

        from limo_exp.tracking.store import open_checked

        check_reachable(uri)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file otherwise
        self.uri = uri
        self.client = open_checked(lambda: MlflowClient(tracking_uri=uri), uri)
        open_checked(lambda: self.client.search_experiments(max_results=1), uri)

    def find(self, ref: str) -> TrackedRun:
        """A run id (32 hex) or a run key (20 hex: the latest FINISHED run of that key, else the latest)."""
        from mlflow.exceptions import MlflowException

        from limo_exp.tracking.tracker import _record

        ref = ref.strip()
        if RUN_ID.fullmatch(ref):
            try:
                return _record(self.client.get_run(ref))
            except MlflowException:
                raise SystemExit(f"no run {ref} in the MLflow store {mask(self.uri)}") from None
        if not RUN_KEY.fullmatch(ref):
            raise SystemExit(f"{ref!r} is neither a run id (32 hex digits) nor a run key (20 hex digits)")
        ids = [e.experiment_id for e in self.client.search_experiments()]
        runs = self.client.search_runs(
            ids, f"tags.`{RUN_KEY_TAG}` = '{ref}'", order_by=["attributes.start_time DESC"]
        )
        if not runs:
            raise SystemExit(f"no run with key {ref} in the MLflow store {mask(self.uri)}")
        finished = [r for r in runs if r.info.status == "FINISHED"]
        return _record((finished or runs)[0])

    def record(self, ref: str) -> RunRecord:
        """The run's record: tags, params, metrics, datasets, loss curve and the small artifacts."""
        run = self.find(ref)
        full = self.client.get_run(run.run_id)
        experiment = self.client.get_experiment(full.info.experiment_id).name
        rec = RunRecord(run, experiment, self.uri)
        for d in full.inputs.dataset_inputs if full.inputs else []:
            context = next((t.value for t in d.tags if t.key == "mlflow.data.context"), "")
            rec.datasets.append(Dataset(d.dataset.name, d.dataset.digest, context, d.dataset.source))
        history = self.client.get_metric_history(run.run_id, "train/loss")
        rec.losses = [m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))]
        rec.artifacts = [a.path for a in self.client.list_artifacts(run.run_id) if not a.is_dir]
        with tempfile.TemporaryDirectory() as tmp:
            got = {name: self._text(run.run_id, name, tmp) for name in PARTS if name in rec.artifacts}
        if "config.yaml" in got:
            import yaml

            rec.config = yaml.safe_load(got["config.yaml"])
        if ENVIRONMENT_FILE in got:
            rec.environment = parse_environment(got[ENVIRONMENT_FILE])
        if "selected_ids.json" in got:
            rec.selected_ids = [str(i) for i in json.loads(got["selected_ids.json"])]
        if TRAINING_ROWS in got:
            table = json.loads(got[TRAINING_ROWS])
            rec.training_rows = [dict(zip(table["columns"], row)) for row in table["data"]]
        return rec

    def _text(self, run_id: str, path: str, tmp: str) -> str:
        return Path(self.client.download_artifacts(run_id, path, tmp)).read_text()

    def samples(self, run_id: str) -> dict[str, list[dict]]:
        """The run's graded samples: task -> rows of ``eval/samples_<task>.jsonl`` ({} when none)."""
        names = [a.path for a in self.client.list_artifacts(run_id, "eval") if not a.is_dir]
        out = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name in sorted(n for n in names if Path(n).name.startswith("samples_")):
                text = self._text(run_id, name, tmp)
                task = Path(name).stem.removeprefix("samples_")
                out[task] = [json.loads(line) for line in text.splitlines() if line.strip()]
        return out

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)
