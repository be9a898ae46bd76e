"""Liger's paths on the CPU, under Triton's interpreter (``TRITON_INTERPRET=1``): the loss on a
forward without targets, no host read inside a step, and two processes with uneven rows giving
one process's losses. Liger 0.8.5's own fused function is checked too, for what the project
avoids: it divides by zero on 0 rows and reads the device twice per micro-batch.

Needs triton and liger-kernel, which the main venv does not hold (Triton's interpreter needs
numpy < 2.4): ``make test-triton`` builds ``.venv-triton`` and runs this file there. fp32 only
(the interpreter gets bf16 arithmetic wrong).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

if importlib.util.find_spec("liger_kernel") is None or importlib.util.find_spec("triton") is None:
    pytest.skip(
        "liger-kernel and triton are not in this venv: `make test-triton` runs these tests in "
        ".venv-triton under Triton's CPU interpreter",
        allow_module_level=True,
    )
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip(
        "TRITON_INTERPRET=1 is not set (it must be set before Triton compiles Liger's kernels): "
        "`make test-triton` sets it",
        allow_module_level=True,
    )

import torch  # noqa: E402
from conftest import torchrun  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import triton_interpret  # noqa: E402

triton_interpret.apply()

from limo_exp.training import attention, loss, syncs  # noqa: E402, F401  (attention: limo_varlen registered)


def _rows(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(1, max(n, 1), 64, generator=g, requires_grad=True)
    w = torch.randn(512, 64, generator=g, requires_grad=True)
    ids = torch.randint(0, 512, (n,), generator=g)
    return h, w, torch.arange(n), ids


def test_liger_on_a_forward_without_targets_gives_zero_and_reaches_the_weights():
    """The padding row of a rank with fewer rows: Liger 0.8.5's fused function raises
    ZeroDivisionError (chunk size min(next_power_of_2(0), 0) = 0, then cdiv(0, 0)); the
    project's Liger path runs no kernel there and gives 0 with zero gradients."""
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    h, w, index, ids = _rows(0)
    with pytest.raises(ZeroDivisionError):
        liger_fused_linear_cross_entropy(h[0, :0], w, ids, reduction="sum")
    out = loss.target_cross_entropy(h, w, None, kernel="liger", target_index=index, target_ids=ids)
    out.backward()
    assert out.item() == 0.0 and not h.grad.any() and w.grad is not None and not w.grad.any()


def test_liger_equals_the_torch_kernel_and_reads_nothing_back():
    """A row of 40 targets, chunks of 16 (three kernel launches): loss and gradients equal the
    torch kernel's (fp32); no host read in forward or backward, where Liger's fused function
    reads two (``.item()`` of the target count, ``torch.equal`` of the incoming gradient)."""
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    got = {}
    for kernel in ("torch", "liger"):
        h, w, index, ids = _rows(40)
        with syncs.HostReads("error"):
            out = loss.target_cross_entropy(
                h, w, None, chunk=16, kernel=kernel, target_index=index, target_ids=ids
            )
            (out * 0.5).backward()
        got[kernel] = (out.detach(), h.grad, w.grad)
    for a, b in zip(got["torch"], got["liger"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    h, w, index, ids = _rows(40)
    with syncs.HostReads("count") as reads:
        (liger_fused_linear_cross_entropy(h[0], w, ids, reduction="sum") * 0.5).backward()
    assert [what for what, _ in reads.found.reads] == [".item() / bool() / int() / float()", "torch.equal"]


def _train_kw():
    # uneven documents in rows of at most 400 tokens: one rank has a padding row in each step
    return {"global_batch_size": 4, "max_tokens_per_micro_batch": 400, "max_length": 400}


def test_a_training_step_with_liger_reads_nothing_back(tiny_model):
    """Every forward, backward and optimizer step of two training steps under the host-read
    check, with loss_impl=liger and limo_varlen attention on packed rows: not one read."""
    from accelerate import Accelerator

    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import train
    from limo_exp.training.models import load

    sys.path.insert(0, str(REPO / "tests"))
    import fsdp_worker

    torch.manual_seed(0)
    model, tok = load(str(tiny_model), attn="limo_varlen")
    cfg = TrainConfig(lr=1e-3, max_steps=2, instruction="Reason.", loss_impl="liger", **_train_kw())
    with syncs.checking("count") as found:
        res = train(model, tok, fsdp_worker.examples(), cfg, Accelerator(cpu=True))
    from limo_exp.training.batching import prepare
    from limo_exp.training.steps import plan_step, step_order

    data = prepare(fsdp_worker.examples(), tok, cfg)
    order = step_order(len(data), 2, 4, 0)
    rows = sum(len(plan_step(data, order[s * 4 : (s + 1) * 4], cfg, 1).rows[0]) for s in range(2))
    assert res.loss_impl == "liger" and res.steps == 2 and rows >= 4
    assert len(found) == rows + 2  # checked: each step's rows and its optimizer step
    assert [r for step in found for r in step.reads] == []


def test_two_processes_with_uneven_rows_and_liger_give_one_process_losses(tiny_model, tmp_path):
    """torchrun, 2 CPU processes over gloo (DDP): rank 0 runs a padding row (no targets) in each
    step, Liger's kernels under the interpreter; the losses equal one process's (torch kernel,
    same global batch) to 1e-5, and no step read anything back."""
    from accelerate import Accelerator

    from limo_exp.config import TrainConfig
    from limo_exp.training.batching import prepare
    from limo_exp.training.loop import train
    from limo_exp.training.models import load, load_tokenizer
    from limo_exp.training.steps import plan_step, step_order

    sys.path.insert(0, str(REPO / "tests"))
    import fsdp_worker

    cfg = TrainConfig(instruction="Reason.", **_train_kw())
    data = prepare(fsdp_worker.examples(), load_tokenizer(str(tiny_model)), cfg)
    order = step_order(len(data), 2, 4, 0)
    plans = [plan_step(data, order[s * 4 : (s + 1) * 4], cfg, 2).rows for s in range(2)]
    assert all(() in rank0 and () not in rank1 for rank0, rank1 in plans)  # rank 0 pads a forward

    out = tmp_path / "liger.json"
    cmd = [*torchrun(2, 29541), str(REPO / "tests/liger_worker.py"), str(tiny_model), str(out)]
    proc = subprocess.run([*cmd, json.dumps(_train_kw())], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    two = json.loads(out.read_text())
    assert (two["world"], two["loss_impl"], two["reads"]) == (2, "liger", [])

    torch.manual_seed(0)
    model, tok = load(str(tiny_model), attn="limo_varlen")
    one_cfg = TrainConfig(lr=1e-3, max_steps=2, instruction="Reason.", loss_impl="target_only", **_train_kw())
    one = train(model, tok, fsdp_worker.examples(), one_cfg, Accelerator(cpu=True))
    assert two["losses"] == pytest.approx(one.losses, rel=1e-5)
