"""What the code that logs a run calls, apart from MLflow: ``RunTracker`` (the Protocol),
``NullTracker`` (its no-op twin: tracking disabled, ranks other than 0) and ``TrackedRun`` (a run
read back, never an MLflow object). ``tracker.Tracker`` is the MLflow one."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass
class TrackedRun:
    """A logged run read back: ids, status, tags, params and the last value of each metric."""

    run_id: str
    name: str = ""
    status: str = ""
    start_time: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


class RunTracker(Protocol):
    """What the code that logs a run calls: ``Tracker`` (MLflow) and its no-op twin ``NullTracker``
    both follow it (a test checks the signatures agree)."""

    run_id: str | None

    def find_finished(self, run_key: str) -> TrackedRun | None: ...
    def close_unfinished(self, run_key: str) -> list[str]: ...
    def run(self, name: str, tags: dict[str, str] | None = None, parent_run_id: str | None = None): ...
    def log_params(self, params: dict[str, str]) -> None: ...
    def log_metrics(
        self, metrics: dict[str, float], step: int | None = None, run_id: str | None = None
    ) -> None: ...
    def set_tags(self, tags: dict[str, str], run_id: str | None = None) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_table(self, rows: list[dict], artifact_file: str, run_id: str | None = None) -> None: ...
    def log_dataset(self, rows: list[dict], name: str, digest: str, context: str, origin=None) -> None: ...
    def log_model(self, checkpoint: str | Path, how: str) -> None: ...
    def add_to_view(self, metrics: list[str], params: list[str]) -> None: ...


class NullTracker(RunTracker):
    """Does nothing; the ``RunTracker`` methods that log are the Protocol's own no-ops."""

    run_id: str | None = None

    def find_finished(self, run_key: str) -> TrackedRun | None:
        return None

    def close_unfinished(self, run_key: str) -> list[str]:
        return []

    @contextmanager
    def run(self, name: str, tags: dict[str, str] | None = None, parent_run_id: str | None = None):
        yield self
