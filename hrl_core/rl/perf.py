"""Small, named speed measures (each says what it saves; see ``hrl bench``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import warnings

import torch

_TUNED = False


def tune_allocator() -> bool:
    """Keep freed large blocks in the heap instead of returning them to the OS.

    A CQL update allocates ~16 MB activations ([N, 21*B, 256] floats) a dozen times.
    glibc serves such blocks with mmap and hands them back on free, so every update
    page-faults them in again: ~10,000 minor faults and ~10% of the update on the
    reference machine. Raising the mmap and trim thresholds makes glibc reuse them.
    Linux/glibc only; elsewhere it does nothing. Returns whether it applied.
    """
    global _TUNED
    if _TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # from <malloc.h>
        ok = libc.mallopt(m_mmap_threshold, 32 << 20)  # 32 MiB: glibc's upper limit
        ok &= libc.mallopt(m_trim_threshold, 1 << 30)
        ok &= libc.mallopt(m_top_pad, 64 << 20)
    except (OSError, AttributeError):
        return False
    _TUNED = bool(ok)
    return _TUNED


def compile_or_eager(fn, name: str):
    """``torch.compile(fn)``, falling back to ``fn`` (with a warning) if compiling fails.

    Compilation happens at the first call (it needs a C++ compiler on CPU, Triton on
    CUDA), so the fallback is decided there; later errors propagate as usual.
    """
    compiled = torch.compile(fn)
    state = {"fn": None}

    def call(*args):
        if state["fn"] is not None:
            return state["fn"](*args)
        try:
            out = compiled(*args)
            state["fn"] = compiled
            return out
        except Exception as exc:  # noqa: BLE001 - any backend failure means "use eager"
            warnings.warn(f"torch.compile of {name} failed ({exc.__class__.__name__}); running eagerly", stacklevel=2)
            state["fn"] = fn
            return fn(*args)

    return call


def make_adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel where this torch supports it on the params' device.

    The default CPU Adam loops over parameters with ~10 small ops each; the fused
    kernel does one pass (about 1.5 ms of a ~9 ms IQL update on a 2-core CPU).
    Same maths; falls back to the default implementation on older torch releases.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def mlp_flops(rows: int, dims: list[int], backward: bool, weight_grads: bool = True, input_grad: bool = False) -> float:
    """Multiply-add FLOPs of an MLP on ``rows`` inputs (x2 per multiply-add).

    Backward costs one GEMM per layer for input gradients (all layers but the first,
    unless the input itself needs a gradient) and one for weight gradients (when the
    weights are trained).
    """
    total = 0.0
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        gemm = 2.0 * rows * d_in * d_out
        total += gemm
        if backward:
            total += gemm if (i > 0 or input_grad) else 0.0
            total += gemm if weight_grads else 0.0
    return total
