"""The two fused passes every weighting runs on, for a (T, n) tensor of task gradients:

    gram(grads)            one read of the buffer                 -> G (T, T), float64
    combine(grads, w, out) one read of the buffer, one write of n -> sum_k w_k g_k

on the fastest backend available: the native module `mtcli._kernel` (csrc/: OpenMP on
the CPU; CUDA kernels on the caller's stream, for T <= 8, when it was built with a CUDA
toolkit), else the torch code below.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

CHUNK = 1 << 18  # columns per block in the torch backend: bounds its float64 temporaries
NATIVE_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


@functools.cache
def _native():
    """The compiled module, or None (with one warning) when it was not built."""
    try:
        from mtcli import _kernel
    except ImportError as e:
        warnings.warn(f"mtcli._kernel is not built ({e}); the gradient weightings run on the slower torch fallback. "
                      "Reinstall with `make install` to build it.", RuntimeWarning, stacklevel=3)
        return None
    return _kernel


def native_module_path() -> str | None:
    module = _native()
    return getattr(module, "__file__", None) if module else None


def _has_cuda_kernels(module) -> bool:
    return bool(module is not None and getattr(module, "has_cuda", False))


def _use_native(grads: torch.Tensor):
    """The native module if it handles this buffer (CPU, or CUDA with T <= 8; a supported dtype), else None."""
    if grads.dtype not in NATIVE_DTYPES:
        return None
    module = _native()
    if grads.device.type == "cpu":
        return module
    if grads.device.type == "cuda" and _has_cuda_kernels(module) and grads.shape[0] <= module.cuda_max_tasks:
        return module
    return None


def backend(device: str | torch.device = "cpu") -> str:
    """Name of what `gram` and `combine` run for float32/bf16/fp16 gradients on `device`."""
    kind = torch.device(device).type
    module = _native()
    if kind == "cpu" and module is not None:
        return "native-cpu"
    if kind == "cuda" and _has_cuda_kernels(module):
        return "native-cuda"
    return "torch"


def _stream(grads: torch.Tensor) -> int:
    return torch.cuda.current_stream(grads.device).cuda_stream


# ---------------------------------------------------------------- the passes

def gram(grads: torch.Tensor) -> np.ndarray:
    """G = grads grads^T for a (T, n) tensor, accumulated in float64."""
    _check(grads)
    native = _use_native(grads)
    if native is not None:
        args = (grads.data_ptr(), grads.shape[0], grads.shape[1], NATIVE_DTYPES[grads.dtype])
        if grads.is_cuda:
            with torch.cuda.device(grads.device):
                return native.gram_cuda(*args, _stream(grads))
        return native.gram(*args)
    total = torch.zeros(grads.shape[0], grads.shape[0], dtype=torch.float64, device=grads.device)
    for start in range(0, grads.shape[1], CHUNK):
        block = grads[:, start:start + CHUNK].double()
        total += block @ block.T
    return total.cpu().numpy()


def combine(grads: torch.Tensor, weights, out: torch.Tensor | None = None) -> torch.Tensor:
    """sum_k weights[k] * grads[k], written into `out` (n,) if given, in the gradients' dtype."""
    _check(grads)
    if out is None:
        out = torch.empty(grads.shape[1], dtype=grads.dtype, device=grads.device)
    _check_out(grads, out)
    native = _use_native(grads)
    if native is not None:
        args = (grads.data_ptr(), grads.shape[0], grads.shape[1], NATIVE_DTYPES[grads.dtype],
                np.asarray(weights, dtype=np.float64), out.data_ptr())
        if grads.is_cuda:
            with torch.cuda.device(grads.device):
                native.combine_cuda(*args, _stream(grads))  # queued on the current stream, no sync
        else:
            native.combine(*args)
        return out
    w = torch.as_tensor(np.asarray(weights), dtype=torch.float64 if grads.dtype == torch.float64 else torch.float32,
                        device=grads.device)
    for start in range(0, grads.shape[1], CHUNK):
        block = grads[:, start:start + CHUNK]
        out[start:start + CHUNK] = (w @ block.to(w.dtype)).to(out.dtype)
    return out


def _check_out(grads: torch.Tensor, out: torch.Tensor) -> None:
    if out.shape != (grads.shape[1],) or out.dtype != grads.dtype or out.device != grads.device or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous ({grads.shape[1]},) {grads.dtype} tensor on {grads.device}")


def _check(grads: torch.Tensor) -> None:
    if grads.dim() != 2:
        raise ValueError(f"expected a (tasks, n) gradient tensor, got shape {tuple(grads.shape)}")
    if not grads.is_contiguous():
        raise ValueError("the gradient buffer must be contiguous")
