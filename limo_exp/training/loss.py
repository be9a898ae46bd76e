"""The SFT loss without full logits: the output layer only at target positions, in chunks.

Hugging Face's causal-LM loss materialises logits for every position (sequence x vocabulary),
then an fp32 copy for the cross-entropy: for LIMO's 16,384 tokens and Qwen2.5's 151,936-word
vocabulary that is 10 GB per copy, and the reason a 1.5B model runs out of memory at that length.
``target_cross_entropy`` instead

- takes the hidden states of the positions whose next token is a target (the assistant's tokens),
- applies the output layer to ``chunk`` of them at a time, computing the summed cross-entropy and,
  in the same pass, its gradients with respect to the hidden states and the output weight,

so peak memory grows with chunk x vocabulary, not sequence x vocabulary, and no logit is kept
for the backward pass. ``install`` makes a model's own forward use it (so DDP / FSDP wrappers,
which call the forward, see nothing different); the loss equals Hugging Face's to rounding.

With ``kernel="liger"`` (CUDA, ``pip install 'limo-exp[liger]'``) the same chunked pass computes
each chunk's loss and logit gradient with Liger's cross-entropy Triton kernel, in place, called
here rather than through Liger's fused function: that one reads the target count on the host
(``.item()``) and compares the incoming gradient with 1 (``torch.equal``), two host syncs per
micro-batch, and divides by zero on a forward without targets (a padding row). A forward
without targets runs no kernel and gives a zero loss whose gradients (zeros) still reach the
output weight and the hidden states, so DDP/FSDP see every parameter on every rank.
"""

from __future__ import annotations

import importlib.util
import os
import types

import torch

from limo_exp.training import zero3

IGNORE = -100
# architectures whose causal-LM forward is decoder -> lm_head (no bias, soft-capping or scaling)
SUPPORTED = ("llama", "qwen2", "qwen3", "mistral")


def _torch_ce(logits: torch.Tensor, t: torch.Tensor, grad: bool) -> torch.Tensor:
    """Summed cross-entropy of fp32 ``logits`` against ``t``; with ``grad`` the logits are
    replaced by d(sum CE)/d(logits) in place."""
    lse = torch.logsumexp(logits, dim=-1)
    loss = (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
    if grad:
        d = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
        d[torch.arange(len(t), device=d.device), t] -= 1.0
    return loss


def _liger_ce(logits: torch.Tensor, t: torch.Tensor, grad: bool) -> torch.Tensor:
    """The same with Liger's cross-entropy Triton kernel (loss and gradient in one pass, in the
    logits' own dtype in place). Called here, chunk by chunk, rather than through Liger's fused
    function, whose forward reads the number of targets with ``.item()`` and whose backward
    compares the incoming gradient with ``torch.equal``: two host syncs per micro-batch. Every
    row here is a target (the positions were gathered on the host), so that count is not needed:
    the reduction is a sum."""
    from liger_kernel.ops.cross_entropy import liger_cross_entropy_kernel
    from liger_kernel.ops.fused_linear_cross_entropy import MAX_FUSED_SIZE
    from liger_kernel.ops.utils import is_hip

    n, v = logits.shape
    losses = torch.zeros(n, dtype=torch.float32, device=logits.device)
    logits, t = logits.contiguous(), t.contiguous()
    liger_cross_entropy_kernel[(n,)](
        X_ptr=logits,
        X_stride=logits.stride(-2),
        Y_ptr=t,
        Y_stride=t.stride(-1),
        weight_ptr=None,
        loss_ptr=losses,
        z_loss_ptr=None,
        loss_stride=losses.stride(-1),
        token_accuracy_ptr=None,
        token_accuracy_stride=0,
        predicted_tokens_ptr=None,
        predicted_tokens_stride=0,
        n_cols=v,
        n_non_ignore=n,  # read under reduction="mean" only
        sum_non_ignore_weight=n,
        weight_sum=0.0,
        ignore_index=IGNORE,
        lse_square_scale=0.0,
        label_smoothing=0.0,
        reduction="sum",
        softcap=None,
        RETURN_Z_LOSS=False,
        RETURN_TOKEN_ACCURACY=False,
        RETURN_PREDICTED_TOKENS=False,
        HAS_WEIGHT=False,
        HAS_SOFTCAPPING=False,
        HAS_GRADIENTS=grad,
        BLOCK_SIZE=min(MAX_FUSED_SIZE, 1 << (v - 1).bit_length()),  # Liger's block: V's next power of 2
        num_warps=16 if is_hip() else 32,
    )
    return losses.sum(), logits


class _TargetCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, dtype: torch.dtype, kernel: str = "torch"):
        ctx.weight_dtype = weight.dtype
        w = weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            if ctx.needs_input_grad[1]
            else None
        )
        grad = grad_h is not None or grad_w is not None
        # no rows (a padding forward, or a rank without targets): no kernel runs, the loss and
        # gradients are zeros, and the weight and hidden states are still in the graph (the
        # gradient hooks of DDP/FSDP fire for every parameter on every rank)
        for s in range(0, hidden.shape[0], chunk):
            h = hidden[s : s + chunk].to(dtype)
            t = targets[s : s + chunk]
            if kernel == "liger":
                loss, d = _liger_ce(h @ w.T, t, grad)  # d: the gradient, in the compute dtype
            else:
                d = (h @ w.T).float()
                loss = _torch_ce(d, t, grad)
            total += loss
            if not grad:
                continue
            d = d.to(dtype)
            if grad_h is not None:
                grad_h[s : s + chunk] = (d @ w).to(hidden.dtype)
            if grad_w is not None:
                grad_w += (d.T @ h).float()
        ctx.save_for_backward(grad_h, grad_w)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        # the incoming gradient multiplies on the device: never compared with 1 on the host
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None, None, None


KERNELS = ("torch", "liger")


def _cuda() -> bool:
    return torch.cuda.is_available()


def _triton_interpreter() -> bool:
    """TRITON_INTERPRET=1: Triton runs its kernels on the CPU, in numpy (slow; for checking)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def liger_missing() -> str:
    """Why Liger's kernels cannot run here ("" when they can: CUDA, or Triton's interpreter)."""
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install 'limo-exp[liger]')"
    if not _cuda() and not _triton_interpreter():
        return (
            "Liger's kernels are Triton kernels and need CUDA (or TRITON_INTERPRET=1, "
            "Triton's CPU interpreter); this machine has none"
        )
    return ""


def liger_layers(model) -> None:
    """Liger's Triton kernels for the decoder's RMSNorm, SwiGLU MLP and rotary embedding, in place
    (``train.liger_layers``; the loss stays this module's). Raises ValueError where Liger cannot run."""
    if liger_missing():
        raise ValueError(f"train.liger_layers=true: {liger_missing()}")
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    flags = {"rope": True, "rms_norm": True, "swiglu": True}
    _apply_liger_kernel_to_instance(
        model=model, cross_entropy=False, fused_linear_cross_entropy=False, **flags
    )


def target_positions(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Where the loss is, found on the host before the batch moves to the device (so the forward
    has no ``nonzero``, which waits for the GPU): ``target_index``, the flat positions of
    ``labels.view(-1)`` whose next token is a target, and ``target_ids``, those targets."""
    b, n = labels.shape
    rows, cols = (labels[:, 1:] != IGNORE).nonzero(as_tuple=True)
    return {"target_index": rows * n + cols, "target_ids": labels[rows, cols + 1]}


def target_cross_entropy(
    hidden,
    weight,
    labels,
    *,
    chunk: int = 1024,
    kernel: str = "torch",
    target_index: torch.Tensor | None = None,
    target_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Summed cross-entropy of next-token prediction where ``labels[:, t + 1] != -100``.

    ``hidden`` (batch, seq, dim) is the decoder's output, ``weight`` (vocab, dim) the output
    layer's. Under autocast the matmuls run in autocast's dtype, the softmax in fp32.
    ``kernel="liger"`` computes the same sum with Liger's cross-entropy kernel, chunk by chunk.
    ``target_index`` / ``target_ids`` (``target_positions(labels)``, computed on the host) spare
    the device a ``nonzero`` and its host sync; without them they are found here.
    """
    if target_index is None or target_ids is None:
        found = target_positions(labels)
        target_index, target_ids = found["target_index"], found["target_ids"]
    # (n_targets, dim): only these positions reach the output layer
    h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, target_index)
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    with torch.autocast(device, enabled=False):
        return _TargetCrossEntropy.apply(h, weight, target_ids, chunk, dtype, kernel)


def supports(model) -> bool:
    """Can ``install`` replace this model's loss? (Known architecture, plain linear output layer.)"""
    head = model.get_output_embeddings()
    return (
        getattr(model.config, "model_type", None) in SUPPORTED
        and isinstance(head, torch.nn.Linear)
        and head.bias is None
        and getattr(model.config, "final_logit_softcapping", None) is None
    )


def output_weight(head) -> torch.Tensor:
    """The output layer's whole weight, for a loss that reads it without calling the layer.

    Under FSDP2 a weight outside its unit's forward is this rank's shard (a DTensor). Accelerate
    puts the output layer in one unit with the final norm (and the embedding, when tied), which
    the decoder has just run: that unit is gathered already and this is a plain read. Under any
    other wrapping the layer's unit is gathered here. Either way the weight's gradient lands on
    the gathered parameter, and FSDP reduce-scatters it after the backward. Under DeepSpeed ZeRO-3
    DeepSpeed has gathered it for this forward (``zero3``); a partition read elsewhere is an error."""
    weight = head.weight
    zero3.check_gathered(weight)
    if not torch.distributed.is_available():
        return weight
    from torch.distributed.tensor import DTensor

    if isinstance(weight, DTensor):
        from torch.distributed.fsdp import FSDPModule

        if not isinstance(head, FSDPModule):
            raise ValueError(
                "target-only loss: the output layer's weight is sharded outside FSDP2 "
                "(tensor parallelism?): use train.loss_impl=hf"
            )
        head.unshard()
        weight = head.weight
    return weight


def install(model, chunk: int = 1024, kernel: str = "torch"):
    """Make ``model``'s forward compute the loss with ``target_cross_entropy`` (no logits are
    returned). Returns the model; raises ValueError for an architecture it does not know, or
    for ``kernel="liger"`` where Liger cannot run."""
    if not supports(model):
        raise ValueError(
            f"target-only loss: unsupported model type {model.config.model_type!r} (known: {SUPPORTED})"
        )
    if kernel not in KERNELS:
        raise ValueError(f"unknown loss kernel {kernel!r} (known: {KERNELS})")
    if kernel == "liger" and liger_missing():
        raise ValueError(f"train.loss_impl=liger: {liger_missing()}")

    def forward(
        self,
        input_ids=None,
        labels=None,
        num_items_in_batch=None,
        use_cache=None,
        target_index=None,
        target_ids=None,
        **kwargs,
    ):
        from transformers.modeling_outputs import CausalLMOutputWithPast

        hidden = self.get_decoder()(input_ids=input_ids, use_cache=False, **kwargs).last_hidden_state
        weight = output_weight(self.get_output_embeddings())
        loss = target_cross_entropy(
            hidden,
            weight,
            labels,
            chunk=chunk,
            kernel=kernel,
            target_index=target_index,
            target_ids=target_ids,
        )
        n = num_items_in_batch if num_items_in_batch is not None else (labels[:, 1:] != IGNORE).sum()
        return CausalLMOutputWithPast(loss=loss / n, logits=None)

    model.forward = types.MethodType(forward, model)
    from limo_exp.training.attention import use_host_boundaries

    use_host_boundaries(model)  # flash_attention_2: no device read to detect packing
    return model
