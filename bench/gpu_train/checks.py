"""Liger's paths against the plain ones (the fused loss; ``train.liger_layers``), and the guard
that keeps Liger's process-wide swaps of transformers' qwen2 module inside one setting."""

from __future__ import annotations

import contextlib
import gc
import traceback


@contextlib.contextmanager
def modeling_kept():
    """Put back whatever a setting changed in transformers' qwen2 module (Liger's kernels replace
    its classes and functions, for every model built later), so no setting inherits another's."""
    from transformers.models.qwen2 import modeling_qwen2

    saved = dict(vars(modeling_qwen2))
    try:
        yield
    finally:
        for name in set(vars(modeling_qwen2)) - set(saved):
            delattr(modeling_qwen2, name)
        for name, value in saved.items():
            if getattr(modeling_qwen2, name, None) is not value:
                setattr(modeling_qwen2, name, value)


def liger_check(config, gpu: bool) -> dict:
    """Liger's fused loss against the plain target-only loss, on one 8,192-token row on CUDA (512
    under Triton's CPU interpreter), in fp32 and under bf16 autocast."""
    import torch

    from limo_exp.training import loss

    if loss.liger_missing():
        return {"skipped": loss.liger_missing()}
    device = "cuda" if gpu else "cpu"
    torch.manual_seed(0)
    n, h, v = (8192 if gpu else 512), config.hidden_size, config.vocab_size
    hidden = torch.randn(1, n, h, device=device, requires_grad=True)
    weight = (0.02 * torch.randn(v, h, device=device)).requires_grad_()
    labels = torch.randint(0, v, (1, n), device=device)
    labels[:, : n // 8] = -100
    result = {"targets": int((labels[:, 1:] != -100).sum())}
    for precision in ("fp32", "bf16_autocast"):
        out = {}
        for kernel in ("torch", "liger"):
            hidden.grad = weight.grad = None
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision != "fp32"):
                value = loss.target_cross_entropy(hidden, weight, labels, kernel=kernel)
            value.backward()
            out[kernel] = (value.item(), {"hidden": hidden.grad.clone(), "weight": weight.grad.clone()})
        result[precision] = _compare(out["torch"], out["liger"], "torch", "liger")
    return result


def _compare(a, b, name_a, name_b) -> dict:
    """Relative differences of two (loss, {name: gradient}) results."""
    (la, ga), (lb, gb) = a, b
    diffs = [((ga[k] - gb[k]).norm() / ga[k].norm()).item() for k in ga]
    return {
        f"loss_{name_a}": la,
        f"loss_{name_b}": lb,
        "loss_rel_diff": abs(la - lb) / abs(la),
        "grad_rel_diff_max": max(diffs),
    }


def layers_of(config, n: int):
    """``config`` with its first ``n`` decoder layers (``layer_types`` cut to match: transformers
    >= 5.17 refuses a config whose layer types outnumber its layers)."""
    fields = {**config.to_dict(), "num_hidden_layers": n}
    if fields.get("layer_types"):
        fields["layer_types"] = fields["layer_types"][:n]
    return type(config)(**fields)


def liger_layers_check(config, gpu: bool) -> dict:
    """limo-exp's ``train.liger_layers`` (Liger's RMSNorm, SwiGLU, RoPE) against the model as it
    is: the loss and every gradient of one forward/backward, on two layers of the shape (1,024
    tokens on CUDA, 128 under Triton's CPU interpreter), in fp32 and under bf16 autocast."""
    import torch
    from transformers import Qwen2ForCausalLM

    from limo_exp.training import loss

    if loss.liger_missing():
        return {"skipped": loss.liger_missing()}
    device = "cuda" if gpu else "cpu"
    small = layers_of(config, 2)
    n = 1024 if gpu else 128
    ids = torch.randint(3, config.vocab_size, (1, n), generator=torch.Generator().manual_seed(2)).to(device)
    result = {"tokens": n, "layers": 2}
    if not gpu:  # seen: Triton 3.6's interpreter multiplies two bf16 blocks wrong (by ~1e34)
        result["bf16_autocast"] = {"skipped": "Triton's CPU interpreter gets bf16 arithmetic wrong"}
    for precision in ("fp32", "bf16_autocast") if gpu else ("fp32",):
        out = {}
        for liger in (False, True):
            with modeling_kept():
                torch.manual_seed(0)
                with torch.device(device):
                    model = Qwen2ForCausalLM._from_config(small, attn_implementation="sdpa")
                if liger:
                    loss.liger_layers(model)
                with torch.autocast(device, dtype=torch.bfloat16, enabled=precision != "fp32"):
                    value = model(input_ids=ids, labels=ids).loss
                value.backward()
            out[liger] = (value.item(), {k: p.grad.float().clone() for k, p in model.named_parameters()})
            del model
        result[precision] = _compare(out[False], out[True], "plain", "liger_layers")
    return result


def guarded(fn, *args) -> dict:
    """``fn(*args)``, or what went wrong: a failure here must not stop the settings."""
    import torch

    try:
        return fn(*args)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
