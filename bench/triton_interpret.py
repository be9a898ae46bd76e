"""Liger's kernels under Triton's CPU interpreter (``TRITON_INTERPRET=1``), so that the GPU bench's
Liger paths can be rehearsed on a machine without CUDA. The kernels' arithmetic is the same code;
the interpreter runs each program instance in numpy (seconds for what a GPU does in microseconds),
so this is for checking results, never for timing.

Triton 3.6's interpreter has two gaps that compiled Triton does not, and Liger 0.8.5 meets both:

- a ``float`` kernel argument stays a Python float (compiled Triton passes an fp32 scalar), so
  Liger's RMSNorm fails at ``eps.to(tl.float32)``: ``apply`` passes floats as fp32 scalars;
- libdevice functions imported by name (``from triton.language.extra.libdevice import rsqrt``)
  are stubs that return None there: ``apply`` points those names at ``tl.math``'s namesakes.

It also needs numpy < 2.4 (its integer arguments are 1-element arrays, which numpy 2.4 no longer
converts to Python ints). And it gets bf16 arithmetic wrong (seen: the product of two bf16 blocks
off by ~1e34; loading bf16 and converting to fp32 is right), so only fp32 results mean anything
there. Used by bench_gpu_train.py when there is no GPU and TRITON_INTERPRET=1.
"""

from __future__ import annotations

import importlib
import sys

# the Liger modules limo-exp's paths use (fused loss, RMSNorm, SwiGLU, RoPE); others already
# imported are patched too
LIGER_OPS = ("cross_entropy", "fused_linear_cross_entropy", "rms_norm", "swiglu", "rope")


def apply() -> list[str]:
    """Patch the interpreter and Liger's modules; returns the names redirected to ``tl.math``."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    major, minor = (int(x) for x in np.__version__.split(".")[:2])
    if (major, minor) >= (2, 4):
        raise RuntimeError(
            f"Triton's interpreter needs numpy < 2.4 (this is {np.__version__}): "
            "pip install --target DIR 'numpy<2.4' and put DIR first on PYTHONPATH"
        )
    if not getattr(interpreter._implicit_cvt, "_fp32_floats", False):
        plain = interpreter._implicit_cvt

        def implicit_cvt(arg):
            if isinstance(arg, float):
                handle = interpreter.TensorHandle(np.array([arg], dtype=np.float32), tl.float32)
                return tl.tensor(handle, tl.float32)
            return plain(arg)

        implicit_cvt._fp32_floats = True
        interpreter._implicit_cvt = implicit_cvt

    for name in LIGER_OPS:
        importlib.import_module(f"liger_kernel.ops.{name}")
    redirected = []
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("liger_kernel.ops.") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            origin = getattr(value, "__module__", "") or ""
            if origin.startswith("triton.language.extra") and hasattr(tl.math, attr):
                # looked up at call time: the interpreter patches tl.math while a kernel runs
                setattr(module, attr, (lambda fn: lambda *a: getattr(tl.math, fn)(*a))(attr))
                redirected.append(f"{module_name}.{attr}")
    return redirected
