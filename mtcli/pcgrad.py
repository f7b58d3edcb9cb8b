"""PCGrad gradient surgery (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning").

Algorithm 1, with the sum reduction:

    for each task i:                        g_i' = g_i
        for j in a random order of the other tasks:
            if g_i' . g_j < 0:  g_i' -= (g_i' . g_j / |g_j|^2) g_j
    return sum_i g_i'

Every g_i' is a linear combination of the original task gradients, so the result is
sum_k w_k g_k with weights w that depend only on the T x T Gram matrix G = g g^T.
That splits the surgery into three steps, each usable on its own:

    gram(grads)            one read of the (T, n) buffer          -> G (T, T), float64
    pcgrad_weights(G, ...) T^2 scalar work on the host            -> w (T,)
    combine(grads, w, out) one read of the buffer, one write of n -> sum_k w_k g_k

`project` runs all three on the fastest backend available: the native module
`mtcli._pcgrad` (csrc/: OpenMP on the CPU; CUDA kernels on the caller's stream, for
T <= 8, when it was built with a CUDA toolkit), else the torch code below. `project_literal` is
the pairwise loop of Algorithm 1 written out, kept as the test oracle.
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
        from mtcli import _pcgrad
    except ImportError as e:
        warnings.warn(f"mtcli._pcgrad is not built ({e}); PCGrad runs on the slower torch fallback. "
                      "Reinstall with `make install` to build it.", RuntimeWarning, stacklevel=3)
        return None
    return _pcgrad


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
    """Name of what `project` runs for float32/bf16/fp16 gradients on `device`."""
    kind = torch.device(device).type
    module = _native()
    if kind == "cpu" and module is not None:
        return "native-cpu"
    if kind == "cuda" and _has_cuda_kernels(module):
        return "native-cuda"
    return "torch"


def _stream(grads: torch.Tensor) -> int:
    return torch.cuda.current_stream(grads.device).cuda_stream


def task_orders(num_tasks: int, seed: int | None = None) -> list[list[int]]:
    """For each task i, the order in which the other tasks are projected out (Algorithm 1's shuffle)."""
    rng = np.random.default_rng(seed)
    return [[int(j) for j in rng.permutation([k for k in range(num_tasks) if k != i])] for i in range(num_tasks)]


def pcgrad_weights(gram: np.ndarray | torch.Tensor, orders: list[list[int]]) -> np.ndarray:
    """Coefficients w with sum_i g_i' = sum_k w_k g_k, from the Gram matrix alone (float64)."""
    gram = np.asarray(gram.cpu() if isinstance(gram, torch.Tensor) else gram, dtype=np.float64)
    num_tasks = gram.shape[0]
    weights = np.zeros(num_tasks)
    for i in range(num_tasks):
        c = np.zeros(num_tasks)
        c[i] = 1.0  # g_i' = sum_k c_k g_k
        for j in orders[i]:
            dot = c @ gram[:, j]  # g_i' . g_j
            if dot < 0 and gram[j, j] > 0:
                c[j] -= dot / gram[j, j]
        weights += c
    return weights


def conflict_stats(gram: np.ndarray | torch.Tensor) -> dict:
    """Cosine between every pair of task gradients and the fraction of pairs in conflict."""
    gram = np.asarray(gram.cpu() if isinstance(gram, torch.Tensor) else gram, dtype=np.float64)
    norms = np.sqrt(np.clip(np.diag(gram), 0, None))
    pairs = [(i, j) for i in range(len(gram)) for j in range(i + 1, len(gram))]
    cosines = {(i, j): float(gram[i, j] / (norms[i] * norms[j])) if norms[i] * norms[j] > 0 else 0.0 for i, j in pairs}
    conflicts = sum(gram[i, j] < 0 for i, j in pairs)
    return {"cosine": cosines, "conflict_fraction": float(conflicts / len(pairs)) if pairs else 0.0}


# ---------------------------------------------------------------- torch backend

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


def project(grads: torch.Tensor, *, seed: int | None = None, out: torch.Tensor | None = None,
            orders: list[list[int]] | None = None) -> torch.Tensor:
    """PCGrad of a (T, n) stack of flattened task gradients: the summed projected gradient (n,)."""
    if orders is None:
        orders = task_orders(grads.shape[0], seed)
    return combine(grads, pcgrad_weights(gram(grads), orders), out)


def project_literal(grads: torch.Tensor, *, seed: int | None = None, orders: list[list[int]] | None = None) -> torch.Tensor:
    """Algorithm 1 as written: the pairwise loop over projected copies. Slow; the test oracle."""
    _check(grads)
    if orders is None:
        orders = task_orders(grads.shape[0], seed)
    projected = [g.clone() for g in grads]
    for i, g_i in enumerate(projected):
        for j in orders[i]:
            g_j = grads[j]
            dot = torch.dot(g_i, g_j)
            if dot < 0:
                g_i -= dot / torch.dot(g_j, g_j) * g_j
    return torch.stack(projected).sum(0)


def _check_out(grads: torch.Tensor, out: torch.Tensor) -> None:
    if out.shape != (grads.shape[1],) or out.dtype != grads.dtype or out.device != grads.device or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous ({grads.shape[1]},) {grads.dtype} tensor on {grads.device}")


def _check(grads: torch.Tensor) -> None:
    if grads.dim() != 2:
        raise ValueError(f"expected a (tasks, n) gradient tensor, got shape {tuple(grads.shape)}")
    if not grads.is_contiguous():
        raise ValueError("the gradient buffer must be contiguous")
