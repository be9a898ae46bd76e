"""Training updates every weight it is meant to: fp32 master weights by default, and a
compensated optimizer for the opt-in bf16 weights (plain AdamW on bf16 loses most updates)."""

from __future__ import annotations

import pytest
import torch

from limo_exp.config import ConfigError, TrainConfig
from limo_exp.training.optim import KahanAdamW, changed_fraction

LR = 5e-6  # LIMO's


def _steps(w0: torch.Tensor, dtype, opt_cls, n: int = 10):
    torch.manual_seed(1)
    grads = [torch.randn_like(w0) for _ in range(n)]
    p = torch.nn.Parameter(w0.clone().to(dtype))
    start = p.detach().clone()
    opt = opt_cls([p], lr=LR)
    for g in grads:
        p.grad = g.to(dtype)
        opt.step()
        opt.zero_grad()
    return start, p, opt


def test_bf16_adamw_loses_updates_and_kahan_keeps_them():
    """A 1024 x 1024 weight of ordinary size (std 0.02), 10 AdamW steps at lr 5e-6."""
    torch.manual_seed(0)
    w0 = (torch.randn(1024, 1024) * 0.02).to(torch.bfloat16).float()  # representable in bf16
    s32, p32, _ = _steps(w0, torch.float32, torch.optim.AdamW)
    assert changed_fraction(s32, p32.detach()) >= 0.99
    s16, p16, _ = _steps(w0, torch.bfloat16, torch.optim.AdamW)
    assert changed_fraction(s16, p16.detach()) < 0.2  # ~7.5%: the lost-update effect
    sk, pk, opt = _steps(w0, torch.bfloat16, KahanAdamW)
    held = KahanAdamW.effective(pk, opt.state[pk])
    assert changed_fraction(sk.float(), held) >= 0.99
    ref = p32.detach() - s32
    for got, bound in ((held - sk.float(), 0.01), (p16.detach().float() - s16.float(), None)):
        err = ((got - ref).norm() / ref.norm()).item()
        if bound:
            assert err < bound  # the compensated update is fp32 AdamW's to < 1%
        else:
            assert err > 0.9  # plain bf16: most of the update is gone


def test_kahan_adamw_on_fp32_weights_is_adamw():
    torch.manual_seed(0)
    w0 = torch.randn(64, 64)
    _, a, _ = _steps(w0, torch.float32, torch.optim.AdamW, n=5)
    _, b, _ = _steps(w0, torch.float32, KahanAdamW, n=5)
    torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-6)  # rounding apart


def _train_under_bf16_autocast(tiny_model, cfg: TrainConfig, load_dtype: str | None = None):
    """train() as `limo-exp run` does on a GPU: weights loaded in train.master_dtype, compute in
    bf16 under Accelerate's autocast (on CPU here)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from limo_exp.data.records import Example
    from limo_exp.data.synthetic import make_pool
    from limo_exp.training.loop import train
    from limo_exp.training.models import load

    torch.manual_seed(0)
    model, tok = load(str(tiny_model), dtype=load_dtype or cfg.master_dtype)
    linear = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n}
    examples = [Example(r.id, r.problem, r.solutions[2].text, r.answer, "long") for r in make_pool(8, seed=0)]
    AcceleratorState._reset_state(reset_partial_state=True)  # a process-wide singleton
    try:
        res = train(model, tok, examples, cfg, Accelerator(cpu=True, mixed_precision="bf16"))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    return res, model, linear


def test_default_recipe_moves_every_weight_at_lr_5e_6(tiny_model):
    cfg = TrainConfig(lr=LR, max_steps=3, batch_size=4, max_length=256)
    assert (cfg.master_dtype, cfg.optimizer) == ("float32", "adamw")  # the default
    _, model, before = _train_under_bf16_autocast(tiny_model, cfg)
    after = dict(model.named_parameters())
    assert len(before) == 14  # q k v o gate up down, 2 layers
    for name, w in before.items():
        assert after[name].dtype == torch.float32
        assert changed_fraction(w, after[name].detach()) >= 0.99, name


def test_bf16_weights_train_only_with_the_compensated_optimizer(tiny_model):
    """A model loaded in bf16 by a library caller: plain AdamW is refused before the first step."""
    with pytest.raises(ValueError, match="torch.bfloat16 with train.optimizer=adamw lose most updates"):
        _train_under_bf16_autocast(tiny_model, TrainConfig(lr=LR, max_steps=1), load_dtype="bfloat16")


def test_kahan_on_bf16_weights_moves_every_weight(tiny_model):
    cfg = TrainConfig(
        lr=LR, max_steps=3, batch_size=4, max_length=256, master_dtype="bfloat16", optimizer="adamw_kahan"
    )
    res, model, before = _train_under_bf16_autocast(tiny_model, cfg)
    opt_state = res.optimizer.state
    for name, p in model.named_parameters():
        if name in before:
            assert p.dtype == torch.bfloat16
            assert changed_fraction(before[name].float(), KahanAdamW.effective(p, opt_state[p])) >= 0.99, name


def test_config_refuses_bf16_weights_with_plain_adamw():
    with pytest.raises(ConfigError, match="use train.optimizer=adamw_kahan"):
        TrainConfig(master_dtype="bfloat16")
    with pytest.raises(ConfigError, match="train.optimizer=.sgd. is not one of"):
        TrainConfig(optimizer="sgd")
