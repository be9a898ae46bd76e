"""Host reads inside a training step, found where they happen.

A step's device work (its forwards, backwards and optimizer step) is queued by the host and run by
the GPU later; any read of a device value on the host (``.item()``, ``bool(t)``, ``.tolist()``,
``torch.equal``, ``.nonzero()``, a boolean-mask index, ``.cpu()``, printing a tensor) makes the
host wait until the GPU has caught up, and the GPU then idles while the host prepares the next
work. Two ways to find them:

- ``HostReads``: on any device, the CPU included, a mode that sees every such operation while it
  is active, and refuses it (``mode="error"``: ``HostRead`` names the operation and where it was
  called) or records it (``mode="count"``). On a CPU run nothing waits, but the same code path
  would wait on a GPU: this is how the CPU tests check that a step reads nothing back.
- ``cuda_syncs(fn)``: on CUDA, the synchronizing operations torch itself reports
  (``torch.cuda.set_sync_debug_mode("warn")``) while ``fn`` runs, counted (for the GPU bench).

``step()`` is what the training loop wraps a step's device work in: nothing unless a check was
turned on (``checking("error")``, or ``LIMO_HOST_READS=error`` / ``count`` in the environment).

Reads not counted: torch's optimizers keep their step counter in a host tensor (unless
``capturable``) and read it with ``.item()``; that value never was on the device, so no wait.
Nor Triton's CPU interpreter copying a kernel's arguments to numpy (on a GPU there is no copy).
"""

from __future__ import annotations

import contextlib
import os
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# operators whose result depends on a device value the host must read (the dispatcher's names)
_READING_OPS = {
    aten._local_scalar_dense.default: ".item() / bool() / int() / float()",
    aten.is_nonzero.default: "bool()",
    aten.equal.default: "torch.equal",
    aten.nonzero.default: ".nonzero()",
    aten.masked_select.default: "torch.masked_select",
    aten._unique2.default: "torch.unique",
    aten.unique_dim.default: "torch.unique",
    aten.unique_consecutive.default: "torch.unique_consecutive",
}
# Python-level reads the dispatcher does not see on a CPU tensor
_READING_METHODS = {"tolist", "numpy", "cpu", "__repr__", "__format__", "__array__"}
# frames whose reads are of host tensors by design: the optimizer's step counter; Triton's CPU
# interpreter, which copies a kernel's arguments to numpy (on a GPU the kernel runs there)
_HOST_TENSOR_FRAMES = ("/torch/optim/", "/triton/runtime/interpreter.py")


_HOST_SIDE = [0]  # > 0 inside ``host_side()``


@contextlib.contextmanager
def host_side():
    """Reads that are of host tensors by design, in code that never runs on a GPU (the CPU
    reference of ``limo_varlen`` reads its boundaries): not counted."""
    _HOST_SIDE[0] += 1
    try:
        yield
    finally:
        _HOST_SIDE[0] -= 1


class HostRead(RuntimeError):
    """A device value was read on the host inside a step."""


@dataclass
class Found:
    """What ``HostReads`` saw: one (operation, caller) per read."""

    reads: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.reads)


def _caller() -> str:
    """The innermost frame outside torch and this module: who asked for the read."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        f = frame.filename
        if "/torch/" in f or f.endswith("syncs.py"):
            continue
        return f"{f}:{frame.lineno} ({frame.name})"
    return "?"


def _host_tensor_read() -> bool:
    return any(p in frame.filename for frame in traceback.extract_stack() for p in _HOST_TENSOR_FRAMES)


def _bool_index(args) -> bool:
    """A boolean-mask index (``t[mask]``, ``t[mask] = v``): its size is the mask's count."""
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


class HostReads(contextlib.AbstractContextManager):
    """While active, every host read of a tensor's value is refused (``mode="error"``) or
    recorded in ``.found`` (``mode="count"``)."""

    def __init__(self, mode: str = "error"):
        if mode not in ("error", "count"):
            raise ValueError(f"HostReads mode {mode!r}: error or count")
        self.mode, self.found = mode, Found()
        self._inside = 0  # a Python-level read already recorded: its dispatcher op is the same read
        outer = self

        class _Dispatch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                what = _READING_OPS.get(func)
                if what is None and func in (
                    aten.index.Tensor,
                    aten.index_put_.default,
                    aten.index_put.default,
                ):
                    what = "a boolean-mask index" if _bool_index(args) else None
                if (
                    what is None
                    and func is aten.repeat_interleave.Tensor
                    and kwargs.get("output_size") is None
                ):
                    what = "repeat_interleave without output_size"
                if what is not None:
                    outer._read(what)
                return func(*args, **kwargs)

        class _Function(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                name = getattr(func, "__name__", "")
                if name not in _READING_METHODS or not args or not isinstance(args[0], torch.Tensor):
                    return func(*args, **(kwargs or {}))
                outer._read(f"Tensor.{name}")
                outer._inside += 1
                try:
                    return func(*args, **(kwargs or {}))
                finally:
                    outer._inside -= 1

        self._modes = (_Function(), _Dispatch())

    def _read(self, what: str) -> None:
        if self._inside or _HOST_SIDE[0] or _host_tensor_read():
            return
        where = _caller()
        if self.mode == "error":
            raise HostRead(f"a host read inside a training step: {what} at {where}")
        self.found.reads.append((what, where))

    def __enter__(self):
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc):
        for m in reversed(self._modes):
            m.__exit__(*exc)
        return False


_CHECK = {"mode": os.environ.get("LIMO_HOST_READS", "")}
_LAST: list[Found] = []  # under "count": what each step found, newest last


@contextlib.contextmanager
def checking(mode: str = "error"):
    """Turn the check of ``step()`` on (``error`` or ``count``) for the duration; yields the list
    of what each step found (under ``count``)."""
    before = _CHECK["mode"]
    _CHECK["mode"] = mode
    _LAST.clear()
    try:
        yield _LAST
    finally:
        _CHECK["mode"] = before


@contextlib.contextmanager
def step():
    """Wrap one step's device work: a no-op unless a check is on (``checking``)."""
    if not _CHECK["mode"]:
        yield None
        return
    with HostReads(_CHECK["mode"]) as reads:
        yield reads
    _LAST.append(reads.found)


def cuda_syncs(fn: Callable[[], object]) -> tuple[object, int, list[str]]:
    """Run ``fn`` under ``torch.cuda.set_sync_debug_mode("warn")``: its result, the number of
    synchronizing CUDA operations torch reported, and their first lines. CUDA only."""
    if not torch.cuda.is_available():
        raise RuntimeError("cuda_syncs needs CUDA (on a CPU, use HostReads)")
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            torch.cuda.set_sync_debug_mode(before)
    syncs = [str(w.message).splitlines()[0] for w in seen if "synchroniz" in str(w.message)]
    return result, len(syncs), syncs
