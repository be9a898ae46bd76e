"""Resumable training state: everything a killed run needs to end where an uninterrupted one would.

A state is a folder ``<state_dir>/step-<n>`` with Accelerate's ``save_state`` (model, optimizer,
registered scheduler, RNG of every library) and ``progress.json`` (the step, the losses so far,
token counts, seconds, the run key that wrote it, and the launch: how many processes, in which
layout, at how many sequences a step). The data order needs nothing more: it is a function of the
seed. A state is complete once ``progress.json`` is in place (written last, atomically), so a kill
during a save leaves the previous state as the latest.

Under FSDP with ``fsdp_state_dict_type: SHARDED_STATE_DICT`` each rank writes its shards through
torch's distributed checkpoint, which reshards on load: such a state resumes on another number of
processes, as do the whole-model states of one process or DDP. A ZeRO-3 state (DeepSpeed's
per-rank partitions) or an FSDP state of another layout does not: ``check_launch`` stops the run
before training with one line that says so (``StateMismatch``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from limo_exp.typed import ConfigError

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
    world: int = 0  # processes that saved it (0: a state of an older limo-exp, which did not say)
    layout: str = ""  # layout(accelerator) of the launch that saved it
    per_step: int = 0  # sequences an optimizer step takes, over all processes


class StateMismatch(ConfigError):
    """A saved state this launch cannot continue: written by another configuration or data
    (another run key), or by processes whose state this launch cannot load. One line, before
    training (a config error: ``limo-exp run`` ends with it, no traceback)."""


# layouts whose state torch or Accelerate loads on any number of processes
RESHARDABLE = ("whole", "fsdp_sharded")


def layout(accelerator) -> str:
    """How ``accelerator`` saves a state: ``fsdp_sharded`` (torch's distributed checkpoint, a shard
    per rank), ``fsdp_full`` (FSDP gathering a whole state), ``deepspeed_zero<stage>`` (DeepSpeed's
    partitions, one per rank), or ``whole`` (one process or DDP: the model and optimizer whole)."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        sharded = "SHARDED" in str(accelerator.state.fsdp_plugin.state_dict_type)
        return "fsdp_sharded" if sharded else "fsdp_full"
    if kind == DistributedType.DEEPSPEED:
        return f"deepspeed_zero{accelerator.state.deepspeed_plugin.zero_stage}"
    return "whole"


def check_launch(path: Path, saved: Progress, world: int, layout: str, per_step: int) -> None:
    """StateMismatch (one line: what saved ``path``, what this launch has, what to do) when this
    launch of ``world`` processes in ``layout`` at ``per_step`` sequences a step cannot continue
    ``saved``. A state of an older limo-exp (no launch recorded) is taken as it comes."""
    if not saved.world:
        return
    was = f"{path} was saved by {saved.world} process(es) ({saved.layout})"
    now = f"this launch has {world} ({layout})"
    fresh = "or move the folder away to start afresh"
    if saved.layout != layout:
        raise StateMismatch(f"{was}; {now}: relaunch with the accelerate config that saved it, {fresh}")
    if saved.world != world and layout not in RESHARDABLE:
        raise StateMismatch(
            f"{was}; {now}, and a {layout} state loads only on as many processes as saved it: "
            f"relaunch with {saved.world} processes (--num_processes {saved.world}), {fresh}"
        )
    if saved.per_step and saved.per_step != per_step:
        raise StateMismatch(
            f"{was} at {saved.per_step} sequences a step; {now} at {per_step}: its steps would take "
            f"other examples; relaunch with {saved.world} processes, or set train.global_batch_size "
            f"(the same steps on any number of processes) and start afresh"
        )


def _steps(state_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in Path(state_dir).glob("step-*"):
        if (p / PROGRESS).is_file() and p.name.removeprefix("step-").isdigit():
            found.append((int(p.name.removeprefix("step-")), p))
    return sorted(found)


def latest(state_dir: str | Path | None, run_key: str) -> tuple[Path, Progress] | None:
    """The newest complete state under ``state_dir``, or None. Raises StateMismatch when it was
    written for another run key (another config or other data); ``check_launch`` then says whether
    this launch can load it."""
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
