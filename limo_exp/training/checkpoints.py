"""Resumable training state: everything a killed run needs to end where an uninterrupted one would.

A state is a folder ``<state_dir>/step-<n>`` with Accelerate's ``save_state`` (model, optimizer,
registered scheduler, RNG of every library) and ``progress.json`` (the step, the losses so far,
token counts, seconds, and the run key that wrote it). The data order needs nothing more: it is
a function of the seed. A state is complete once ``progress.json`` is in place (written last,
atomically), so a kill during a save leaves the previous state as the latest.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROGRESS = "progress.json"


@dataclass
class Progress:
    run_key: str
    step: int  # optimizer steps done
    losses: list[float] = field(default_factory=list)
    target_tokens: int = 0
    seen_tokens: int = 0
    seconds: float = 0.0
    real_tokens: int = 0


class StateMismatch(ValueError):
    """A saved state written by another configuration or data (another run key)."""


def _steps(state_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in Path(state_dir).glob("step-*"):
        if (p / PROGRESS).is_file() and p.name.removeprefix("step-").isdigit():
            found.append((int(p.name.removeprefix("step-")), p))
    return sorted(found)


def latest(state_dir: str | Path | None, run_key: str) -> tuple[Path, Progress] | None:
    """The newest complete state under ``state_dir``, or None. Raises StateMismatch when it was
    written for another run key (another config or other data)."""
    if state_dir is None or not Path(state_dir).is_dir():
        return None
    found = _steps(Path(state_dir))
    if not found:
        return None
    path = found[-1][1]
    progress = Progress(**json.loads((path / PROGRESS).read_text()))
    if progress.run_key != run_key:
        raise StateMismatch(
            f"{path} was saved by run key {progress.run_key}, not {run_key}: its config or data differ; "
            f"move the folder away to start afresh"
        )
    return path, progress


def save(accelerator, state_dir: str | Path, progress: Progress, keep: int) -> Path:
    """Save the state after ``progress.step`` steps; keep the newest ``keep`` states."""
    path = Path(state_dir) / f"step-{progress.step:07d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        tmp = path / (PROGRESS + ".tmp")
        tmp.write_text(json.dumps(asdict(progress)))
        os.replace(tmp, path / PROGRESS)
        for _, old in _steps(Path(state_dir))[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def remove(state_dir: str | Path | None) -> None:
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)
