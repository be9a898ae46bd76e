"""FSDP2 on CPU processes (gloo): the model really is sharded, and training gives one process's
losses and weights.

Accelerate applies FSDP on GPUs only and quietly trains with DDP over gloo on a CPU;
``limo-exp run``'s Accelerator (``training.recipe.make_accelerator``) turns FSDP on there, so these
tests shard as a GPU run does: decoder layers, the embedding, and the final norm with the output
layer (whose weight the target-only loss reads without calling the layer) each an FSDP unit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import fsdp_worker
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FSDP_YAML = REPO / "conf/accelerate/fsdp.yaml"
LIMIT_S = 180  # a rank that runs fewer forwards than another waits in FSDP's all-gather for ever


def _launch(prefix: list[str], tiny_model, out: Path, spec: dict) -> dict:
    """Run tests/fsdp_worker.py after ``prefix`` (in a process group of its own, killed whole past
    LIMIT_S); returns rank 0's report."""
    cmd = [*prefix, str(REPO / "tests/fsdp_worker.py"), str(tiny_model), str(out), json.dumps(spec)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        log, _ = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(
            f"no end after {LIMIT_S} s: under FSDP every rank must run the same number of forwards "
            "(a rank with fewer rows waits in the next all-gather for ever)"
        )
    assert proc.returncode == 0, log[-4000:]
    return json.loads(out.read_text())


def _single(tiny_model, untie: bool, **kw):
    """One process, no FSDP: the reference losses and trained model."""
    from accelerate import Accelerator

    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import train
    from limo_exp.training.models import load

    torch.manual_seed(0)
    model, tok = load(str(tiny_model))
    if untie:
        model = fsdp_worker.untied(model)
    cfg = TrainConfig(lr=1e-3, max_steps=2, instruction="Reason.", **kw)
    return train(model, tok, fsdp_worker.examples(), cfg, Accelerator(cpu=True)), model


def _same_weights(checkpoint: Path, model) -> None:
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(checkpoint).state_dict()
    for name, p in model.named_parameters():
        torch.testing.assert_close(saved[name], p.detach(), rtol=1e-4, atol=1e-5, msg=name)


def test_two_process_fsdp_shards_and_gives_the_single_process_loss(tiny_model, tmp_path):
    """``accelerate launch --config_file conf/accelerate/fsdp.yaml --num_processes 2``: every weight
    a DTensor holding half its rows on each rank; documents of uneven lengths packed into rows of
    at most 400 tokens, so one rank has fewer rows than the other in each step (padded to the same
    number of forwards); the loop's gradient checkpointing on. Losses equal one process's to 1e-5,
    and the saved (gathered) weights equal its trained weights."""
    from limo_exp.config import TrainConfig
    from limo_exp.training.batching import prepare
    from limo_exp.training.models import load_tokenizer
    from limo_exp.training.steps import plan_step, step_order

    kw = {
        "global_batch_size": 4,
        "max_tokens_per_micro_batch": 400,
        "max_length": 400,
        "gradient_checkpointing": True,
        "checkpoint_skip_layers": 1,
    }
    cfg = TrainConfig(instruction="Reason.", **kw)
    data = prepare(fsdp_worker.examples(), load_tokenizer(str(tiny_model)), cfg)
    order = step_order(len(data), 2, 4, 0)
    plans = [plan_step(data, order[s * 4 : (s + 1) * 4], cfg, 2).rows for s in range(2)]
    assert all(() in rank0 and () not in rank1 for rank0, rank1 in plans)  # rank 0 pads a forward

    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_YAML)]
    launch += ["--num_processes", "2", "--main_process_port", "29536"]
    two = _launch(launch, tiny_model, tmp_path / "fsdp.json", {"untie": True, "train": kw})

    assert (two["world"], two["distributed_type"], two["steps"]) == (2, "DistributedType.FSDP", 2)
    units = {"model.layers.0", "model.layers.1", "model.embed_tokens", "model.norm", "lm_head"}
    assert units <= set(two["units"])  # Accelerate's units (norm and lm_head are one)
    for name, (kind, numel, local) in two["params"].items():
        assert (kind, local) == ("DTensor", numel // 2), name
    assert two["weight_seen"] == [["Parameter", [512, 64]]]  # the loss read the whole output weight

    one, model = _single(tiny_model, untie=True, **kw)
    assert two["losses"] == pytest.approx(one.losses, rel=1e-5)
    assert one.losses == pytest.approx([6.28050, 6.11565], abs=1e-4)
    _same_weights(tmp_path / "fsdp_checkpoint", model)


def test_fsdp_in_one_plain_process(tiny_model, tmp_path):
    """No launcher: one process that sets what ``accelerate launch --config_file fsdp.yaml
    --num_processes 1`` would (a process group of one, the FSDP_* variables) runs FSDP in
    process, as a script or a bench can; the tied output layer; one process's losses."""
    kw = {"batch_size": 4, "max_length": 400}
    one_fsdp = _launch(
        [sys.executable], tiny_model, tmp_path / "fsdp.json", {"in_process": True, "train": kw}
    )
    assert (one_fsdp["world"], one_fsdp["distributed_type"]) == (1, "DistributedType.FSDP")
    assert {kind for kind, _, _ in one_fsdp["params"].values()} == {"DTensor"}
    one, model = _single(tiny_model, untie=False, **kw)
    assert one_fsdp["losses"] == pytest.approx(one.losses, rel=1e-5)
    _same_weights(tmp_path / "fsdp_checkpoint", model)
