"""Sharded training state that survives a kill: a two-process FSDP point (``limo-exp run`` under
``accelerate launch --config_file conf/accelerate/fsdp.yaml``, CPU processes over gloo, the
sharded state ``fsdp_state_dict_type: SHARDED_STATE_DICT`` saves) stopped by SIGTERM (SLURM's
time limit) and by SIGKILL, then relaunched with the same command, ends with the weights of an
uninterrupted run; a state saved by two processes resumes on one (torch's distributed checkpoint
reshards it); ZeRO-3 the same where DeepSpeed runs (``make test-deepspeed``), through this file
run as the training part of ``limo-exp run`` (``python tests/test_sharded_resume.py``: on a CPU,
``limo-exp run``'s Accelerator leaves DeepSpeed out)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FSDP_YAML = REPO / "conf/accelerate/fsdp.yaml"
ZERO3_YAML = REPO / "conf/accelerate/deepspeed_zero3.yaml"
# one launch (4-7 min at a load of 15-19 here); a rank waiting in a collective for a dead one never ends
LIMIT_S = 600
# 40 steps of 4 sequences on 2 processes, a state every 10 steps (SIGTERM's own state falls
# between them: the ranks stop together a step or two after the signal)
POINT = ["debug=fast", "study=sharded", "train.max_steps=40", "train.global_batch_size=4"]
POINT += ["train.checkpoint_every=10", "train.keep_states=2"]


def _launch(root: Path, cache_dir: Path, processes: int, port: int) -> subprocess.Popen:
    """``accelerate launch --config_file fsdp.yaml --num_processes N -m limo_exp run`` of the point
    into ``root``, its output in ``root/launch-*.log``."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_YAML)]
    cmd += ["--num_processes", str(processes), "--main_process_port", str(port), "-m", "limo_exp", "run"]
    cmd += [*POINT, f"paths.output_root={root}", f"paths.cache_dir={cache_dir}"]
    return _start(cmd, root, {"PYTHONUNBUFFERED": "1"})


def _start(cmd: list[str], root: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(root / f"launch-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 (the process writes it)
    env = os.environ | env | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def _signal_all(proc: subprocess.Popen, sig: int) -> None:
    """``sig`` to the launcher and every process under it, as SLURM signals every process of a job
    step: torch's launcher starts each rank in a session of its own, out of reach of a signal to
    the launcher's process group (a SIGKILL to the launcher alone leaves the ranks training)."""
    import psutil

    try:
        top = psutil.Process(proc.pid)
        every = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in every:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)


def _log(root: Path) -> str:
    """The output of the last launch into ``root``."""
    logs = sorted(root.glob("launch-*.log"))
    return logs[-1].read_text() if logs else ""


def _tail(root: Path) -> str:
    return _log(root)[-4000:]


def _wait(proc: subprocess.Popen, root: Path) -> int:
    try:
        return proc.wait(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        _signal_all(proc, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"a launch did not end within {LIMIT_S} s:\n{_tail(root)}")


def _states(root: Path) -> dict[int, dict]:
    """Complete states (progress.json in place) by step."""
    return {
        int(p.parent.name.removeprefix("step-")): json.loads(p.read_text())
        for p in root.glob("**/state/step-*/progress.json")
    }


def _kill_after_a_new_state(proc: subprocess.Popen, root: Path, sig: int) -> int:
    """``sig`` to every process of the launch once a state newer than the last appears."""
    before, deadline = max(_states(root), default=0), time.time() + LIMIT_S
    while max(_states(root), default=0) <= before:
        if proc.poll() is not None or time.time() > deadline:
            _signal_all(proc, signal.SIGKILL)
            pytest.fail(f"no new state:\n{_tail(root)}")
        time.sleep(0.05)
    _signal_all(proc, sig)
    return _wait(proc, root)


def _final_weights(root: Path) -> dict[str, torch.Tensor]:
    """The saved model's weights as transformers loads them (a tied output layer is the embedding,
    whether the file holds it or not: two processes' gathered state names it, one's does not)."""
    from transformers import AutoModelForCausalLM

    (ckpt,) = root.glob("**/checkpoint/model.safetensors")
    return AutoModelForCausalLM.from_pretrained(ckpt.parent).state_dict()


def _resumed_from(root: Path) -> int:
    """The step the last launch resumed from (its log's "resuming from .../step-<n> (step n of m)")."""
    import re

    found = set(re.findall(r"resuming from \S+/step-(\d+) \(step", _log(root)))  # a line from each rank
    assert len(found) == 1, _tail(root)
    return int(found.pop())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir, tiny_model) -> dict[str, torch.Tensor]:
    """The point's final weights, trained in one launch of two processes."""
    root = tmp_path_factory.mktemp("uninterrupted")
    assert _wait(_launch(root, cache_dir, 2, 29561), root) == 0, _tail(root)
    return _final_weights(root)


@pytest.mark.slow
def test_fsdp_sigterm_and_relaunch_ends_with_the_uninterrupted_weights(uninterrupted, tmp_path, cache_dir):
    """SIGTERM to every process (SLURM's time limit): the ranks agree to stop at the end of the
    step after the one the signal came in, save a sharded state there (a step no
    ``checkpoint_every=10`` state falls on: torch's distributed checkpoint, a shard a rank) and end; the same command relaunched resumes from it and ends with
    the uninterrupted run's weights exactly (fp32 on CPU: the same operations in the same order)."""
    _kill_after_a_new_state(_launch(tmp_path, cache_dir, 2, 29562), tmp_path, signal.SIGTERM)
    states = _states(tmp_path)
    stopped = max(states)
    assert stopped % 10 and stopped < 40, sorted(states)  # SIGTERM's own state
    assert (states[stopped]["world"], states[stopped]["layout"]) == (2, "fsdp_sharded")
    (folder,) = tmp_path.glob(f"runs/*/state/step-{stopped:07d}")
    assert {"pytorch_model_fsdp_0", "optimizer_0"} <= {p.name for p in folder.iterdir()}

    assert _wait(_launch(tmp_path, cache_dir, 2, 29563), tmp_path) == 0, _tail(tmp_path)
    assert _resumed_from(tmp_path) == stopped
    resumed = _final_weights(tmp_path)
    assert resumed.keys() == uninterrupted.keys()
    for name, w in uninterrupted.items():
        assert torch.equal(resumed[name], w), name


@pytest.mark.slow
def test_fsdp_sigkill_and_relaunch_ends_with_the_uninterrupted_weights(uninterrupted, tmp_path, cache_dir):
    """SIGKILL to every process right after a state is complete (no chance to save more, a newer
    state may be half written): the relaunch resumes from the newest complete state and ends
    with the uninterrupted run's weights exactly."""
    _kill_after_a_new_state(_launch(tmp_path, cache_dir, 2, 29564), tmp_path, signal.SIGKILL)
    killed_at = max(_states(tmp_path))
    assert killed_at < 40
    assert _wait(_launch(tmp_path, cache_dir, 2, 29565), tmp_path) == 0, _tail(tmp_path)
    assert _resumed_from(tmp_path) == killed_at
    resumed = _final_weights(tmp_path)
    assert resumed.keys() == uninterrupted.keys()
    for name, w in uninterrupted.items():
        assert torch.equal(resumed[name], w), name


@pytest.mark.slow
def test_fsdp_state_of_two_processes_resumes_on_one(uninterrupted, tmp_path, cache_dir):
    """Killed (SIGKILL) after a sharded state of two processes; a relaunch without ``accelerate
    launch`` (one process, no FSDP: another layout) stops before training with one line; the
    relaunch on one FSDP process resumes from the state (torch's distributed checkpoint reshards
    two shards into one) and ends with the uninterrupted run's weights, to 1e-6: the step's sums
    run in another order on one process."""
    _kill_after_a_new_state(_launch(tmp_path, cache_dir, 2, 29566), tmp_path, signal.SIGKILL)
    saved = max(_states(tmp_path))
    assert _states(tmp_path)[saved]["world"] == 2

    cmd = [sys.executable, "-m", "limo_exp", "run", *POINT, f"paths.output_root={tmp_path}"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    plain = subprocess.run(
        [*cmd, f"paths.cache_dir={cache_dir}"], capture_output=True, text=True, timeout=LIMIT_S, env=env
    )
    state = f"{next(tmp_path.glob('runs/*/state'))}/step-{saved:07d}"
    assert plain.returncode == 1 and plain.stderr.splitlines()[-1] == (
        f"limo-exp: config error: {state} was saved by 2 process(es) (fsdp_sharded); this launch has 1 "
        "(whole): relaunch with the accelerate config that saved it, or move the folder away to start afresh"
    ), plain.stderr[-3000:]
    assert max(_states(tmp_path)) == saved  # nothing trained, nothing saved

    assert _wait(_launch(tmp_path, cache_dir, 1, 29567), tmp_path) == 0, _tail(tmp_path)
    assert f"{state} was saved by 2 processes, resumed on 1 (fsdp_sharded)" in _log(tmp_path)
    assert _resumed_from(tmp_path) == saved
    resumed = _final_weights(tmp_path)
    assert resumed.keys() == uninterrupted.keys()
    for name, w in uninterrupted.items():
        torch.testing.assert_close(resumed[name], w, rtol=0, atol=1e-6, msg=name)


def _progress(world: int, layout: str, per_step: int = 4):
    from limo_exp.training.checkpoints import Progress

    return Progress("k", 8, [1.0] * 8, world=world, layout=layout, per_step=per_step)


def test_a_state_another_launch_cannot_load_is_one_line_naming_both_launches():
    """ZeRO-3 partitions on other processes, another layout, other sequences a step: refused with
    what saved the state, what this launch has and what to do. Sharded FSDP and whole states on
    another number of processes, and a state of an older limo-exp (no launch in it), pass."""
    from limo_exp.training.checkpoints import StateMismatch, check_launch
    from limo_exp.typed import ConfigError

    s = Path("state/step-0000008")
    with pytest.raises(StateMismatch) as e:
        check_launch(s, _progress(8, "deepspeed_zero3"), 16, "deepspeed_zero3", 4)
    assert str(e.value) == (
        "state/step-0000008 was saved by 8 process(es) (deepspeed_zero3); this launch has 16 "
        "(deepspeed_zero3), and a deepspeed_zero3 state loads only on as many processes as saved it: "
        "relaunch with 8 processes (--num_processes 8), or move the folder away to start afresh"
    )
    assert isinstance(e.value, ConfigError)  # limo-exp run ends with this line, no traceback
    with pytest.raises(StateMismatch, match=r"relaunch with the accelerate config that saved it"):
        check_launch(s, _progress(2, "fsdp_sharded"), 1, "whole", 4)
    with pytest.raises(StateMismatch, match=r"at 8 sequences a step; this launch has 1 \(whole\) at 4: "):
        check_launch(s, _progress(2, "whole", per_step=8), 1, "whole", 4)
    check_launch(s, _progress(2, "fsdp_sharded"), 1, "fsdp_sharded", 4)
    check_launch(s, _progress(8, "whole"), 2, "whole", 4)
    check_launch(s, _progress(0, ""), 2, "deepspeed_zero3", 4)


def test_a_state_records_its_launch_and_a_relaunch_at_other_steps_stops_before_training(tiny_model, tmp_path):
    """One process saves world 1, layout whole and its sequences a step; a relaunch whose steps
    would take other sequences (here: the state says two processes of two) stops before any step."""
    import fsdp_worker
    from accelerate import Accelerator

    from limo_exp.config import TrainConfig
    from limo_exp.training.checkpoints import StateMismatch
    from limo_exp.training.loop import train
    from limo_exp.training.models import load

    def attempt(state_dir, logged):
        torch.manual_seed(0)
        model, tok = load(str(tiny_model))
        cfg = TrainConfig(lr=1e-3, max_steps=2, batch_size=2, checkpoint_every=1, instruction="Reason.")
        log = lambda m, step: logged.append(step)  # noqa: E731
        return train(
            model,
            tok,
            fsdp_worker.examples(),
            cfg,
            Accelerator(cpu=True),
            log,
            state_dir=state_dir,
            run_key="k",
        )

    attempt(tmp_path, [])
    saved = tmp_path / "step-0000001" / "progress.json"
    progress = json.loads(saved.read_text())
    assert (progress["world"], progress["layout"], progress["per_step"]) == (1, "whole", 2)
    saved.write_text(json.dumps(progress | {"world": 2, "per_step": 4}))
    logged = []
    with pytest.raises(
        StateMismatch,
        match=r"saved by 2 process\(es\) \(whole\) at 4 sequences a step; this launch has 1 \(whole\) at 2",
    ):
        attempt(tmp_path, logged)
    assert logged == []


ZERO3 = {"global_batch_size": 4, "max_length": 400, "max_steps": 24, "checkpoint_every": 10, "keep_states": 2}


def _zero3_launch(out: Path, port: int) -> subprocess.Popen:
    """This file as a worker on two processes under ``accelerate launch --config_file
    deepspeed_zero3.yaml`` (as tests/test_zero3.py starts tests/zero3_worker.py), training the
    tiny model (``out/../tiny_model``) into ``out``."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ZERO3_YAML)]
    cmd += ["--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(port)]
    cmd += [__file__, str(out.parent / "tiny_model"), str(out), json.dumps(ZERO3)]
    # DeepSpeed's shared-memory op, built once per venv into the venv (make test-deepspeed), unless
    # the environment names a folder of its own (from a copy of the venv elsewhere it is rebuilt)
    ops = os.environ.get("TORCH_EXTENSIONS_DIR") or str(Path(sys.prefix) / "torch_extensions")
    return _start(cmd, out, {"TORCH_EXTENSIONS_DIR": ops})


@pytest.fixture
def zero3_dirs(tmp_path, tiny_model) -> tuple[Path, Path]:
    (tmp_path / "tiny_model").symlink_to(tiny_model)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    return whole, killed


@pytest.mark.slow
@pytest.mark.deepspeed
@pytest.mark.skipif(find_spec("deepspeed") is None, reason="DeepSpeed is not installed: make test-deepspeed")
def test_zero3_sigterm_then_sigkill_then_relaunch_ends_with_the_uninterrupted_weights(zero3_dirs):
    """Two ZeRO-3 ranks (weights and optimizer partitioned, DeepSpeed's per-rank checkpoint files)
    stopped by SIGTERM at an agreed step, relaunched, killed by SIGKILL, relaunched to the end:
    the saved weights equal those of an uninterrupted launch exactly."""
    whole, killed = zero3_dirs
    assert _wait(_zero3_launch(whole, 29571), whole) == 0, _tail(whole)

    proc = _zero3_launch(killed, 29568)
    _kill_after_a_new_state(proc, killed, signal.SIGTERM)
    states = _states(killed)
    stopped = max(states)
    assert stopped % 10 and stopped < 24, sorted(states)  # SIGTERM's own state
    assert (states[stopped]["world"], states[stopped]["layout"]) == (2, "deepspeed_zero3")
    _kill_after_a_new_state(_zero3_launch(killed, 29569), killed, signal.SIGKILL)
    killed_at = max(_states(killed))
    assert stopped < killed_at < 24
    assert _wait(_zero3_launch(killed, 29570), killed) == 0, _tail(killed)
    assert _resumed_from(killed) == killed_at

    want, got = _final_weights(whole), _final_weights(killed)
    assert got.keys() == want.keys()
    for name, w in want.items():
        assert torch.equal(got[name], w), name


def _zero3_worker(model_dir: str, out: Path, kw: dict) -> None:
    """The training part of ``limo-exp run`` under ZeRO-3: SIGTERM deferred to the end of a step
    (the state saved, then exit 143), training from the last state of ``out/state``, the gathered
    weights saved to ``out/checkpoint``."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    from limo_exp import stopping
    from limo_exp.commands.common import stop_on_signals
    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import save, train
    from limo_exp.training.models import load

    sys.path.insert(0, str(Path(__file__).parent))
    import fsdp_worker

    logging.basicConfig(level=logging.INFO)  # "resuming from ..."
    stop_on_signals()
    acc = Accelerator(mixed_precision="no", kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
    torch.manual_seed(0)
    model, tok = load(model_dir)
    cfg = TrainConfig(lr=1e-3, instruction="Reason.", **kw)
    with stopping.deferred():
        res = train(model, tok, fsdp_worker.examples(), cfg, acc, state_dir=out / "state", run_key="zero3")
    if stopping.asked():
        sys.exit(128 + stopping.asked())
    save(res.model, tok, str(out / "checkpoint"), acc)


if __name__ == "__main__":
    _zero3_worker(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]))


def test_run_stops_on_a_state_this_launch_cannot_load_before_the_model_loads(small_cfg, monkeypatch):
    """``limo-exp run``'s check: a ZeRO-3 state of two processes, found by a one-process launch,
    is one line before the base model is even looked up (a 32B model loads for minutes)."""
    from accelerate import Accelerator

    from limo_exp import training
    from limo_exp.commands import run as run_cmd
    from limo_exp.commands.common import parse
    from limo_exp.training.checkpoints import StateMismatch

    c = parse(small_cfg()).config
    run_dir = Path(c.paths.output_root) / "runs" / "k"
    state = run_dir / "state" / "step-0000003"
    state.mkdir(parents=True)
    saved = {"run_key": "k", "step": 3, "world": 2, "layout": "deepspeed_zero3", "per_step": 16}
    (state / "progress.json").write_text(json.dumps(saved))

    def looked_up(*a, **k):
        raise AssertionError("the base model was looked up")

    monkeypatch.setattr(training, "resolve", looked_up)
    with pytest.raises(StateMismatch) as err:
        run_cmd._train_and_save(c, "k", [], run_dir, Accelerator(cpu=True), None)
    assert str(err.value).startswith(
        f"{state} was saved by 2 process(es) (deepspeed_zero3); this launch has 1 (whole)"
    )
