"""Optimizers that do not lose small updates.

At LIMO's learning rate (5e-6) an AdamW step moves a weight by ~lr, far below bfloat16's
resolution for weights of ordinary size (a weight of 0.02 has a bf16 spacing of ~1.2e-4): a bf16
weight updated in place rounds most steps back to where it was. Two ways out:

- ``adamw`` on fp32 master weights (the default, ``train.master_dtype=float32``): the weights
  stay fp32, the forward and backward run in bf16 under autocast.
- ``adamw_kahan`` for bf16 weights (``train.master_dtype=bfloat16``, opt-in): AdamW whose update
  is added with Kahan-compensated summation. A per-weight bf16 buffer keeps what rounding took
  off; it is added back at the next step, so the sum of the updates is kept although each one
  is below bf16's resolution. Memory: bf16 weight + bf16 compensation + fp32 moments.
"""

from __future__ import annotations

import math

import torch

from limo_exp.config import OPTIMIZERS


class KahanAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, bias-corrected moments in fp32) with Kahan-compensated
    weight updates. For fp32 weights it equals ``torch.optim.AdamW`` up to rounding."""

    def __init__(
        self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0
    ):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"bad KahanAdamW settings: lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @staticmethod
    def effective(p: torch.Tensor, state: dict) -> torch.Tensor:
        """The weight as the optimizer holds it: the stored value plus the pending compensation."""
        comp = state.get("compensation")
        return p.detach().float() + (comp.float() if comp is not None else 0.0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                    state["compensation"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                grad = p.grad.float()
                m, v, comp = state["exp_avg"], state["exp_avg_sq"], state["compensation"]
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = lr / (1 - beta1**t)
                denom = (v / (1 - beta2**t)).sqrt_().add_(eps)
                weight = p.to(torch.float32, copy=True)
                update = m / denom * -step_size
                if wd:
                    update.add_(weight, alpha=-lr * wd)
                # Kahan: add the update and the carried-over remainder; keep what rounding loses
                update.add_(comp.float())
                new = weight + update
                p.copy_(new)
                comp.copy_(update - (p.float() - weight))
        return loss


FUSED_DEVICES = ("cuda",)  # where ``adamw`` takes torch's fused kernel (tests add "cpu")


def _fusable(params) -> bool:
    return bool(params) and all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params)


def make_optimizer(params, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``adamw`` (torch's; fused when every weight is on CUDA) or ``adamw_kahan`` (above), with
    betas and eps at AdamW's defaults."""
    if name == "adamw":
        params = list(params)
        fused = _fusable(params)  # one kernel for all weights on CUDA
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    if name == "adamw_kahan":
        return KahanAdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"train.optimizer={name!r} is not one of {OPTIMIZERS}")


def fuse_on_device(opt) -> bool:
    """Turn on AdamW's fused kernel for each parameter group whose weights are all on CUDA now,
    before the first step (``True`` when a group changed). Under FSDP the optimizer is built over
    the CPU weights that wrapping then shards onto the GPU, so ``make_optimizer`` saw CPU weights
    and left it off: torch then steps with its foreach kernels (several launches per weight
    group) instead of one fused kernel. Accelerate's wrapper is looked through; other optimizers
    (DeepSpeed's, ``adamw_kahan``) and a group set explicitly are left alone."""
    inner = getattr(opt, "optimizer", opt)
    if type(inner) is not torch.optim.AdamW or inner.state:
        return False
    changed = False
    for group in inner.param_groups:
        if group.get("fused") or group.get("foreach") or group.get("differentiable"):
            continue
        if _fusable(group["params"]):
            group["fused"], changed = True, True
    return changed


def changed_fraction(before: torch.Tensor, after: torch.Tensor) -> float:
    """Share of a weight's entries that differ after training (the lost-update check)."""
    return (before != after).float().mean().item() if before.numel() else math.nan
