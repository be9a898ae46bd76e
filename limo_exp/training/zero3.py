"""DeepSpeed ZeRO-3 and a loss that reads the output layer's weight without calling the layer.

Under ZeRO-3 each rank holds a slice of every weight, and hooks around each module's forward and
backward gather that module's weights. The target-only loss (``loss.install``) reads
``lm_head.weight`` from the model's own forward and never calls ``lm_head``, so those hooks do not
gather it; DeepSpeed does, by another mechanism: a read, during a forward of the model it wraps,
of a weight that is not gathered registers it as an *external parameter* of the module running
(the model itself) and gathers it. From then on the model's own hooks gather it for each forward
and again for the backward, where its whole gradient is reduce-scattered. Measured with DeepSpeed
0.19.8 on two CPU processes (tests/test_zero3.py): the loss reads the whole weight, tied to the
embedding or not, with ``kernel="torch"`` or Liger's (Triton's interpreter), and training gives
one process's losses; the wrapped module called directly, before any forward of the engine,
gathers it too.

Read anywhere else (outside a forward of the model, or under a DeepSpeed without that mechanism)
the weight is this rank's partition, shape ``(0,)``: ``check_gathered`` makes that an error
saying so, instead of a matmul of the wrong shape.

DeepSpeed is not imported: its parameters carry ``ds_id`` and ``ds_status``.
"""

from __future__ import annotations


def is_zero3(param) -> bool:
    """Is ``param`` a DeepSpeed ZeRO-3 parameter (partitioned, whole only while gathered)?"""
    return hasattr(param, "ds_id") and hasattr(param, "ds_status")


def check_gathered(weight, what: str = "the output layer's weight") -> None:
    """RuntimeError when ``weight`` is a ZeRO-3 parameter that is not gathered here."""
    if not is_zero3(weight):
        return
    status = getattr(weight.ds_status, "name", str(weight.ds_status))  # ZeroParamStatus
    if status == "AVAILABLE" and weight.numel() == getattr(weight, "ds_numel", weight.numel()):
        return
    whole = tuple(getattr(weight, "ds_shape", ()))
    raise RuntimeError(
        f"target-only loss: {what} is this rank's ZeRO-3 partition of shape {tuple(weight.shape)} "
        f"(whole: {whole}, {status}). DeepSpeed gathers it for a read inside a forward of the model it "
        "wraps: compute the loss in the model's forward (loss.install), or use train.loss_impl=hf"
    )
