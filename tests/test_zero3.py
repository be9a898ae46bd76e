"""DeepSpeed ZeRO-3 (``conf/accelerate/deepspeed_zero3.yaml``, LIMO's topology) with the target-only
loss, on CPU processes over gloo.

Under ZeRO-3 each rank keeps a slice of every weight; outside a forward the output layer's weight
is an empty partition (shape ``(0,)``). The target-only loss reads ``lm_head.weight`` without
calling ``lm_head``: DeepSpeed gathers it because the read happens inside a forward of the model
(it registers the weight as an external parameter of the model and gathers it again for the
backward). These tests pin that, on the real training path, and that a partition read anywhere
else is a clear error (``loss.output_weight``), not a matmul of the wrong shape.

The two-process test needs DeepSpeed (``make test-deepspeed``: a venv of its own, .venv-deepspeed).
"""

from __future__ import annotations

import json
from enum import Enum
from importlib.util import find_spec
from pathlib import Path

import fsdp_worker
import pytest
import services
import torch

from limo_exp.training import loss

REPO = Path(__file__).resolve().parents[1]
ZERO3_YAML = REPO / "conf/accelerate/deepspeed_zero3.yaml"
LIMIT_S = 900  # two ranks x 3 steps: ~1 CPU-minute; minutes of wall time on a busy machine
KW = {"global_batch_size": 4, "max_length": 400, "max_steps": 3}

needs_deepspeed = pytest.mark.skipif(
    find_spec("deepspeed") is None,
    reason="DeepSpeed is not installed in this venv: `make test-deepspeed` runs this in .venv-deepspeed",
)


class Status(Enum):  # DeepSpeed's ZeroParamStatus, by name
    AVAILABLE = 1
    NOT_AVAILABLE = 2
    INFLIGHT = 3


def _zero3_param(rows: int, status: str) -> torch.nn.Parameter:
    """A stand-in for a ZeRO-3 parameter of shape (512, 64): DeepSpeed's attributes, and the whole
    weight (``rows=512``) or, as DeepSpeed leaves it outside a gather, an empty tensor (``rows=0``)."""
    p = torch.nn.Parameter(torch.randn(rows, 64) if rows else torch.empty(0))
    p.ds_id, p.ds_status, p.ds_shape, p.ds_numel = 7, Status[status], torch.Size([512, 64]), 512 * 64
    return p


def test_output_weight_reads_a_gathered_zero3_weight_and_refuses_a_partition():
    """Gathered (inside a forward of the model DeepSpeed wraps): the weight itself. A partition
    (read outside one): an error naming ZeRO-3 and the way out; in flight: the same."""
    head = torch.nn.Linear(64, 512, bias=False)
    head.weight = _zero3_param(512, "AVAILABLE")
    assert loss.output_weight(head) is head.weight
    head.weight = _zero3_param(0, "NOT_AVAILABLE")
    with pytest.raises(
        RuntimeError, match=r"ZeRO-3 partition of shape \(0,\) \(whole: \(512, 64\), NOT_AVAILABLE\)"
    ):
        loss.output_weight(head)
    head.weight = _zero3_param(0, "INFLIGHT")
    with pytest.raises(RuntimeError, match="inside a forward of the model it wraps"):
        loss.output_weight(head)


def _launch(model_dir: Path, out: Path, train: dict) -> dict:
    """tests/zero3_worker.py on two processes under ``accelerate launch --config_file
    deepspeed_zero3.yaml`` (a process group of its own, killed whole past LIMIT_S)."""
    args = [str(model_dir), str(out), json.dumps({"train": train})]
    services.two_processes(ZERO3_YAML, REPO / "tests/zero3_worker.py", args, 29548, LIMIT_S)
    return json.loads(out.read_text())


def _single(model_dir: Path, **kw):
    """One process, no DeepSpeed, fp32: the reference losses and trained model."""
    from accelerate import Accelerator

    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import train
    from limo_exp.training.models import load

    torch.manual_seed(0)
    model, tok = load(str(model_dir))
    cfg = TrainConfig(lr=1e-3, instruction="Reason.", **kw)
    return train(model, tok, fsdp_worker.examples(), cfg, Accelerator(cpu=True)), model


@needs_deepspeed
@pytest.mark.deepspeed
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_zero3_two_processes_give_the_single_process_loss(tiny_model, tmp_path, tied):
    """Two ranks, weights partitioned at load (``zero3_init_flag``), the target-only loss: the loss
    reads the whole output weight (512 x 64), losses equal one fp32 process's to 1e-5, and the
    saved (gathered) weights equal its trained ones, the output layer's included (it moved).
    Tied: the output layer is the embedding (the tiny model, Qwen2.5-1.5B); untied: a weight of
    its own (Qwen2.5-7B/32B), which only the loss reads."""
    from transformers import AutoModelForCausalLM

    model_dir = tiny_model
    if not tied:
        model_dir = tmp_path / "untied"
        fsdp_worker.untied(AutoModelForCausalLM.from_pretrained(tiny_model)).save_pretrained(model_dir)
        for f in tiny_model.glob("*"):  # the tokenizer's files
            if not (model_dir / f.name).exists():
                (model_dir / f.name).symlink_to(f)
    before = AutoModelForCausalLM.from_pretrained(model_dir).lm_head.weight.detach().clone()

    two = _launch(model_dir, tmp_path / "zero3.json", KW)
    assert (two["world"], two["distributed_type"], two["zero_stage"]) == (2, "DistributedType.DEEPSPEED", 3)
    assert two["at_load"] == {"ds_id": True, "local_shape": [0]}  # partitioned: nothing whole on a rank
    assert (two["loss_impl"], two["steps"], two["weight_seen"]) == ("target_only", 3, [[512, 64]])

    one, model = _single(model_dir, **KW)
    assert two["losses"] == pytest.approx(one.losses, abs=1e-5)
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "zero3_checkpoint")
    assert saved.config.tie_word_embeddings is tied
    state = saved.state_dict()
    for name, p in model.named_parameters():
        torch.testing.assert_close(state[name], p.detach(), rtol=1e-4, atol=1e-5, msg=name)
    moved = (state["lm_head.weight"] - before).abs()
    assert moved.max() > 1e-3  # lr 1e-3, three steps: the output layer trained
