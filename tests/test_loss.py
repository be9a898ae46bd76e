"""The target-only, chunked loss equals Hugging Face's full-logits loss, gradients included."""

from __future__ import annotations

import copy

import pytest
import torch

from limo_exp.training import loss


@pytest.fixture(scope="module")
def models(tiny_model):
    from limo_exp.training.models import load

    torch.manual_seed(0)
    hf, _ = load(str(tiny_model))
    ours = loss.install(copy.deepcopy(hf), chunk=7)  # chunks smaller than the target count
    return hf, ours


def _batch(packed: bool):
    torch.manual_seed(1)
    if packed:  # two sequences in one row, position ids restarting, first label of each -100
        ids = torch.randint(3, 500, (1, 50))
        labels = ids.clone()
        labels[0, :12] = -100
        labels[0, 30:38] = -100
        pos = torch.cat([torch.arange(30), torch.arange(20)])[None]
        return {"input_ids": ids, "labels": labels, "position_ids": pos, "use_cache": False}  # as in training
    ids = torch.randint(3, 500, (2, 40))
    labels = ids.clone()
    labels[:, :10] = -100  # prompts
    labels[1, 30:] = -100  # padding
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "use_cache": False}


@pytest.mark.parametrize("packed", [False, True])
def test_same_loss_and_gradients_as_full_logits(models, packed):
    hf, ours = models
    batch = _batch(packed)
    for m in models:
        m.zero_grad()
        m(**batch, num_items_in_batch=17.0).loss.backward()
    a, b = hf(**batch, num_items_in_batch=17.0), ours(**batch, num_items_in_batch=17.0)
    assert b.logits is None  # no full logits are made
    assert b.loss.item() == pytest.approx(a.loss.item(), rel=1e-6)
    for (name, p), q in zip(hf.named_parameters(), ours.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=name)
    # without num_items_in_batch: the mean over target tokens, as Hugging Face does
    assert ours(**batch).loss.item() == pytest.approx(hf(**batch).loss.item(), rel=1e-6)


def test_same_loss_under_bf16_autocast(models):
    hf, ours = models
    batch = _batch(False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = hf(**batch).loss, ours(**batch).loss
    assert b.item() == pytest.approx(a.item(), rel=1e-3)


def test_training_uses_it_where_known_and_gives_the_pinned_losses(tiny_model):
    from accelerate import Accelerator

    from limo_exp.config import TrainConfig
    from limo_exp.data.records import Example
    from limo_exp.data.synthetic import make_pool
    from limo_exp.training.loop import train
    from limo_exp.training.models import load

    examples = [
        Example(r.id, r.problem, r.solutions[1].text, r.answer, "short") for r in make_pool(8, seed=0)
    ]
    out = {}
    for impl in ("auto", "hf"):
        torch.manual_seed(0)
        model, tok = load(str(tiny_model))
        cfg = TrainConfig(lr=1e-3, max_steps=2, batch_size=4, instruction="Reason.", loss_impl=impl)
        out[impl] = train(model, tok, examples, cfg, Accelerator(cpu=True))
    assert (out["auto"].loss_impl, out["hf"].loss_impl) == ("target_only", "hf")
    assert out["auto"].losses == pytest.approx(out["hf"].losses, rel=1e-5)
    assert out["auto"].losses == pytest.approx([6.27866, 6.12392], abs=1e-4)  # test_train's pin


def test_unknown_architecture_is_refused_and_auto_falls_back(models, monkeypatch):
    from limo_exp.training.loop import use_loss

    hf, _ = models
    other = copy.deepcopy(hf)
    monkeypatch.setattr(other.config, "model_type", "gemma2")
    with pytest.raises(ValueError, match="unsupported model type 'gemma2'"):
        loss.install(other)
    assert use_loss(other, "auto") == "hf"


class _StandInCrossEntropyKernel:
    """Liger's cross-entropy Triton kernel in plain torch, launched as Triton launches it
    (``kernel[grid](**arguments)``): each row's loss, and with HAS_GRADIENTS d(loss)/d(logits)
    written over the logits; records what it is given."""

    def __init__(self, calls):
        self.calls = calls

    def __getitem__(self, grid):
        def launch(X_ptr, Y_ptr, loss_ptr, n_cols, reduction, HAS_GRADIENTS, n_non_ignore, **kw):
            assert grid == (X_ptr.shape[0],) and n_cols == X_ptr.shape[1]
            assert kw["ignore_index"] == -100 and not kw["HAS_WEIGHT"] and not kw["RETURN_Z_LOSS"]
            self.calls.append({"shape": tuple(X_ptr.shape), "reduction": reduction, "n": n_non_ignore})
            logits = X_ptr.float()
            lse = torch.logsumexp(logits, dim=-1)
            loss_ptr.copy_(lse - logits.gather(1, Y_ptr[:, None]).squeeze(1))
            if HAS_GRADIENTS:
                d = torch.softmax(logits, dim=-1)
                d[torch.arange(len(Y_ptr)), Y_ptr] -= 1.0
                X_ptr.copy_(d)

        return launch


@pytest.fixture
def fake_liger(monkeypatch):
    """liger_kernel as a plain-torch stand-in (the real one is Triton, CUDA only) that records
    what it is given, on a machine that pretends to have CUDA."""
    import importlib.machinery
    import sys
    import types

    calls = []
    names = (
        "liger_kernel",
        "liger_kernel.transformers",
        "liger_kernel.ops",
        "liger_kernel.ops.cross_entropy",
    )
    names += ("liger_kernel.ops.fused_linear_cross_entropy", "liger_kernel.ops.utils")
    for name in names:
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, module)
    sys.modules["liger_kernel.ops.cross_entropy"].liger_cross_entropy_kernel = _StandInCrossEntropyKernel(
        calls
    )
    sys.modules["liger_kernel.ops.fused_linear_cross_entropy"].MAX_FUSED_SIZE = 32768
    sys.modules["liger_kernel.ops.utils"].is_hip = lambda: False
    layers = sys.modules["liger_kernel.transformers"]
    layers._apply_liger_kernel_to_instance = lambda **kw: calls.append({"layers": kw})
    monkeypatch.setattr(loss, "_cuda", lambda: True)
    return calls


def test_auto_takes_liger_where_it_can_run_with_the_target_positions_only(models, fake_liger):
    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import check_loss_impl, use_loss

    hf, _ = models
    liger = copy.deepcopy(hf)
    assert loss.liger_missing() == ""
    check_loss_impl(TrainConfig(loss_impl="liger"))  # no error where it can run
    assert use_loss(liger, "auto") == "liger"
    batch = _batch(packed=True)
    for m in (hf, liger):
        m.zero_grad()
        m(**batch, num_items_in_batch=17.0).loss.backward()
    # 50 positions, 49 next-token labels, of which 12 - 1 + 8 are -100: 30 reach the output layer,
    # in one chunk (1024 a chunk), summed: the count (read only by a mean) is the host's
    assert fake_liger == [{"shape": (30, 512), "reduction": "sum", "n": 30}]
    a, b = hf(**batch, num_items_in_batch=17.0), liger(**batch, num_items_in_batch=17.0)
    assert b.logits is None
    assert b.loss.item() == pytest.approx(a.loss.item(), rel=1e-6)
    for (name, p), q in zip(hf.named_parameters(), liger.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_a_forward_without_targets_runs_no_kernel_and_still_reaches_every_weight(models, fake_liger):
    """The one-token padding row (a rank with fewer rows than another): Liger's fused function
    divides by zero there (chunk size 0); here no kernel runs, the loss is 0, and the output
    weight and the decoder get (zero) gradients, so DDP/FSDP's hooks fire on every rank."""
    from limo_exp.training.sft_data import pack
    from limo_exp.training.steps import batch_tensors

    liger = loss.install(copy.deepcopy(models[0]), kernel="liger")
    tensors = batch_tensors([], None, True, True, "cpu")
    assert tensors["target_index"].numel() == 0 and pack([])["input_ids"].shape == (1, 1)
    liger.zero_grad()
    out = liger(**tensors, use_cache=False, num_items_in_batch=4.0)
    out.loss.backward()
    assert out.loss.item() == 0.0 and fake_liger == []
    grads = [p.grad for p in liger.parameters()]
    assert all(g is not None for g in grads) and all(not g.any() for g in grads)


def test_liger_where_it_cannot_run_is_refused(models, monkeypatch):
    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import check_loss_impl, use_loss

    hf, _ = models
    monkeypatch.setattr(loss, "_cuda", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(loss.importlib.util, "find_spec", lambda name: object())  # "installed"
    with pytest.raises(
        ValueError, match="train.loss_impl=liger: Liger's kernels are Triton kernels and need CUDA"
    ):
        check_loss_impl(TrainConfig(loss_impl="liger"))
    with pytest.raises(ValueError, match="need CUDA"):
        use_loss(copy.deepcopy(hf), "liger")
    assert use_loss(copy.deepcopy(hf), "auto") == "target_only"  # auto falls back to plain torch


def test_liger_runs_without_cuda_under_tritons_interpreter(monkeypatch):
    monkeypatch.setattr(loss, "_cuda", lambda: False)
    monkeypatch.setattr(loss.importlib.util, "find_spec", lambda name: object())  # "installed"
    for value, missing in (("1", False), ("0", True), (None, True)):
        if value is None:
            monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        else:
            monkeypatch.setenv("TRITON_INTERPRET", value)
        assert bool(loss.liger_missing()) is missing, value


def test_liger_layers_are_applied_to_the_model_when_asked(tiny_model, fake_liger):
    from accelerate import Accelerator

    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import train
    from limo_exp.training.models import load
    from limo_exp.training.sft_data import Tokenized

    model, tok = load(str(tiny_model))
    rows = [Tokenized([5, 6, 7, 8], [-100, 6, 7, 8])] * 2
    cfg = TrainConfig(lr=1e-3, max_steps=1, batch_size=2, liger_layers=True, loss_impl="target_only")
    train(model, tok, rows, cfg, Accelerator(cpu=True))
    layers = [c["layers"] for c in fake_liger if "layers" in c]
    assert len(layers) == 1 and layers[0].pop("model") is model
    assert layers[0] == {
        "rope": True,
        "rms_norm": True,
        "swiglu": True,
        "cross_entropy": False,
        "fused_linear_cross_entropy": False,
    }


def test_liger_layers_where_liger_cannot_run_are_refused():
    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import check_loss_impl

    with pytest.raises(ValueError, match="train.liger_layers=true: liger-kernel is not installed"):
        check_loss_impl(TrainConfig(liger_layers=True))
