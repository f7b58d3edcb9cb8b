"""The two fused passes every weighting runs on, for a (T, n) tensor of task gradients:

    gram(grads)            one read of the buffer                 -> G (T, T), float64
    combine(grads, w, out) one read of the buffer, one write of n -> sum_k w_k g_k

and the rows family's passes (graddrop, trimmed_mean, ema_rows, excess_stats: csrc/rows.h)

on the fastest backend available: the native module `mtcli._kernel` (csrc/: OpenMP on
the CPU; CUDA kernels on the caller's stream, for T <= 8, when it was built with a CUDA
toolkit), else the torch code below.
"""

from __future__ import annotations

import contextlib
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


# ---------------------------------------------------------------- the rows family's passes

SPLITMIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """The counter hash of csrc/rows.h on uint64 arrays (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64) + np.uint64(SPLITMIX[0])
    z = (z ^ (z >> np.uint64(30))) * np.uint64(SPLITMIX[1])
    z = (z ^ (z >> np.uint64(27))) * np.uint64(SPLITMIX[2])
    return z ^ (z >> np.uint64(31))


def graddrop_draws(seed: int, counter: int, n: int) -> np.ndarray:
    """GradDrop's uniform draw per column for (seed, counter), as the native passes make them:
    U_k = (splitmix64(key + k) >> 40) 2^-24, key = splitmix64(seed ^ splitmix64(counter))."""
    with np.errstate(over="ignore"):
        key = splitmix64(np.uint64(seed) ^ splitmix64(np.uint64(counter)))
        return (splitmix64(key + np.arange(n, dtype=np.uint64)) >> np.uint64(40)).astype(np.float64) / 2.0**24


def _rows_native(grads: torch.Tensor):
    """The native module for a rows pass on this buffer (CPU, or CUDA; T <= 64), else None."""
    module = _native()
    if grads.dtype not in NATIVE_DTYPES or module is None or not hasattr(module, "graddrop"):
        return None
    if grads.device.type == "cuda" and not _has_cuda_kernels(module):
        return None
    return module if grads.device.type in ("cpu", "cuda") else None


def _device_args(grads: torch.Tensor) -> dict:
    return {"stream": _stream(grads), "cuda": True} if grads.is_cuda else {}


def graddrop(grads: torch.Tensor, leak, seed: int, counter: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """GradDrop's combination of the (T, n) rows: per column the sign purity P against the draw
    U of (seed, counter); out = sum_t (leak_t + (1 - leak_t) M_t) g_t."""
    _check(grads)
    out = torch.empty(grads.shape[1], dtype=grads.dtype, device=grads.device) if out is None else out
    _check_out(grads, out)
    leak = np.asarray(leak, dtype=np.float64)
    native = _rows_native(grads)
    if native is not None:
        with torch.cuda.device(grads.device) if grads.is_cuda else contextlib.nullcontext():
            native.graddrop(grads.data_ptr(), grads.shape[0], grads.shape[1], NATIVE_DTYPES[grads.dtype], leak,
                            seed, counter, out.data_ptr(), **_device_args(grads))
        return out
    g = grads.double()
    purity = 0.5 * (1 + g.sum(0) / g.abs().sum(0))
    u = torch.from_numpy(graddrop_draws(seed, counter, grads.shape[1])).to(g.device)
    mask = (purity > u) & (g > 0) | (purity < u) & (g < 0)
    l = torch.as_tensor(leak, device=g.device)[:, None]
    out.copy_(((l + (1 - l) * mask) * g.float()).sum(0).to(out.dtype))
    return out


def trimmed_mean(grads: torch.Tensor, trim: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Per column, the mean of the rows less the `trim` largest and the `trim` smallest."""
    _check(grads)
    if trim < 0 or grads.shape[0] - 2 * trim < 1:
        raise ValueError(f"trim={trim} leaves no row of {grads.shape[0]}")
    out = torch.empty(grads.shape[1], dtype=grads.dtype, device=grads.device) if out is None else out
    _check_out(grads, out)
    native = _rows_native(grads)
    if native is not None:
        with torch.cuda.device(grads.device) if grads.is_cuda else contextlib.nullcontext():
            native.trimmed_mean(grads.data_ptr(), grads.shape[0], grads.shape[1], NATIVE_DTYPES[grads.dtype], trim,
                                out.data_ptr(), **_device_args(grads))
        return out
    ordered = grads.float().sort(dim=0).values
    out.copy_(ordered[trim:grads.shape[0] - trim].double().mean(0).to(out.dtype))
    return out


def ema_rows(grads: torch.Tensor, state: torch.Tensor, rows, keep: float, coef) -> None:
    """In place: state[rows[t]] = keep * state[rows[t]] + (1 - keep) * coef[t] * grads[t] (float32 state)."""
    _check(grads)
    _check_state(grads, state)
    rows, coef = np.asarray(rows, dtype=np.int64), np.asarray(coef, dtype=np.float64)
    native = _rows_native(grads)
    if native is not None:
        with torch.cuda.device(grads.device) if grads.is_cuda else contextlib.nullcontext():
            native.ema_rows(grads.data_ptr(), grads.shape[0], grads.shape[1], NATIVE_DTYPES[grads.dtype],
                            state.data_ptr(), rows, float(keep), coef, **_device_args(grads))
        return
    for t, (row, c) in enumerate(zip(rows, coef)):
        state[row].mul_(float(keep)).add_(grads[t].float(), alpha=float((1 - keep) * c))


def excess_stats(grads: torch.Tensor, state: torch.Tensor, rows) -> np.ndarray:
    """In place: state[rows[t]] += grads[t]^2; returns w[t] = sum_k grads[t,k]^2 / sqrt(state[rows[t],k] + 1e-7)."""
    _check(grads)
    _check_state(grads, state)
    rows = np.asarray(rows, dtype=np.int64)
    native = _rows_native(grads)
    if native is not None:
        with torch.cuda.device(grads.device) if grads.is_cuda else contextlib.nullcontext():
            return native.excess_stats(grads.data_ptr(), grads.shape[0], grads.shape[1], NATIVE_DTYPES[grads.dtype],
                                       state.data_ptr(), rows, **_device_args(grads))
    w = np.zeros(len(rows))
    for t, row in enumerate(rows):
        square = grads[t].float() ** 2
        state[row].add_(square)
        w[t] = float((square.double() / (state[row].double() + 1e-7).sqrt()).sum())
    return w


def _check_state(grads: torch.Tensor, state: torch.Tensor) -> None:
    if state.dim() != 2 or state.shape[1] != grads.shape[1] or state.dtype != torch.float32 \
            or state.device != grads.device or not state.is_contiguous():
        raise ValueError(f"state must be a contiguous (rows, {grads.shape[1]}) float32 tensor on {grads.device}")

