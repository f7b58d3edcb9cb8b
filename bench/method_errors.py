"""The worst relative error of each method the every-method issue added, against its reference
(TorchJD where it has the method, else the papers' oracles in the tests), over T = 2..8 and the
tests' steps: the figures BENCHMARKS.md quotes (each test asserts 1e-5).

    python bench/method_errors.py
"""

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "weightings"), str(REPO)]

import test_loss_reading_gram as L  # noqa: E402
import test_modo as M  # noqa: E402
import test_rows_methods as R  # noqa: E402
from torchjd import aggregation  # noqa: E402

import numpy as np  # noqa: E402

from mtcli.weightings import aggregate, kernel, make  # noqa: E402

worst: dict[str, float] = {}


def record(name: str, error: float) -> None:
    worst[name] = max(worst.get(name, 0.0), error)


def with_draws(draws: torch.Tensor, fn):
    """TorchJD's GradDrop given the kernel's draws in place of torch.rand."""
    rand, torch.rand = torch.rand, lambda *a, **k: draws
    try:
        return fn()
    finally:
        torch.rand = rand


for T in range(2, 9):
    ours, theirs = make("graddrop", num_tasks=T, seed=5), aggregation.GradDrop()
    for step in range(4):
        rows = R._rows(T, step)
        draws = torch.from_numpy(kernel.graddrop_draws(5, step, rows.shape[1]))
        record("graddrop", R._relative(R._ours(ours, rows), with_draws(draws, lambda: theirs(rows.double()))))
    for trim in range(1, (T - 1) // 2 + 1):
        rows = R._rows(T, trim)
        record("trimmed-mean", R._relative(R._ours(make(f"trimmed-mean:trim={trim}", num_tasks=T), rows),
                                           aggregation.TrimmedMean(trim)(rows.double())))
    for warmup in (0, 2):
        ours, theirs = make(f"excess-mtl:n_warmup_steps={warmup}", num_tasks=T), aggregation.ExcessMTL(n_warmup_steps=warmup)
        for step in range(4 + warmup):
            rows = R._rows(T, step)
            record("excess-mtl", R._relative(R._ours(ours, rows), theirs(rows.double())))
    ours, theirs = make("sdmgrad", num_tasks=T), aggregation.SDMGradWeighting()
    for step in range(4):
        gram = kernel.gram(R._rows(T, step))
        record("sdmgrad", R._relative(torch.from_numpy(ours(gram)), theirs(torch.from_numpy(gram))))
    for name, oracle in (("moco", R.moco_oracle), ("db-mtl", R.db_mtl_oracle)):
        ours = make(name, num_tasks=T)
        for step, expected in enumerate(oracle(T, 4)):
            record(name, R._relative(R._ours(ours, R._rows(T, step), R._losses(T, step)), expected))
    ours = make("gradnorm", num_tasks=T)
    for step, expected in enumerate(L.gradnorm_oracle(T, 8)):
        grads, losses = L._task_gradients(T, step), L._losses(T, step)
        rows = (torch.from_numpy(ours.loss_scales())[:, None] * grads).float()
        weights = ours(kernel.gram(rows), list(range(T)), losses.numpy())
        record("gradnorm", L._relative(kernel.combine(rows, weights).double(), expected))
        with torch.no_grad():
            ours.w -= L.GRADNORM_LR * ours.w.grad
    ours = make("imtl", num_tasks=T)
    for step, expected in enumerate(L.imtl_oracle(T, 6)):
        grads, losses = L._task_gradients(T, step), L._losses(T, step)
        rows = torch.from_numpy(ours.loss_scales())[:, None] * grads
        weights = ours(kernel.gram(rows.float()), list(range(T)), losses.numpy())
        record("imtl", L._relative(torch.from_numpy(weights) @ rows, expected))
        with torch.no_grad():
            ours.log_scale -= 0.1 * ours.log_scale.grad
    for gamma, rho in ((0.1, 0.0), (0.002, 0.5)):
        samples = [M._samples(T, step) for step in range(M.STEPS)]
        as_float = [(a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)) for a, b in samples]
        ours = make(f"modo:gamma={gamma},rho={rho}", num_tasks=T)
        for (j1, j2), expected in zip(samples, M._oracle(as_float, gamma, rho)):
            got = aggregate("modo", M._interleaved(j1, j2), weighting=ours).double()
            record("modo", R._relative(got, torch.from_numpy(expected)))

for name, error in worst.items():
    print(f"{name}: {error:.1e}")
