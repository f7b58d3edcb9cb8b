"""Where mtcli's weightings and TorchJD's aggregators differ most, and why: a wider sweep
than the test suite's fixed cases, for the two methods that solve optimisation problems
with different solvers.

    python bench/torchjd_sweep.py            # CAGrad (CLARABEL default vs tightened) and Nash-MTL

CAGrad: relative difference of Σ w_k g_k against TorchJD's CAGrad(c=0.4) solved by CLARABEL
at its default tolerance, then at tightened ones. Nash-MTL: over 3 warm-started calls per
sweep, the relative difference split by whether both solved the same number of convex
problems (the paper's stop rule can fire one iteration apart).
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "weightings")]
warnings.filterwarnings("ignore")

import cvxpy as cp  # noqa: E402
import torchjd.aggregation as jd  # noqa: E402
from test_torchjd_parity import _count_nash_solves, jacobian, relative  # noqa: E402

from mtcli.weightings import kernel, make  # noqa: E402


def cagrad(tight: bool) -> list[float]:
    solve = cp.Problem.solve
    if tight:
        cp.Problem.solve = lambda self, *a, **k: solve(self, *a, tol_gap_abs=1e-14, tol_gap_rel=1e-14, tol_feas=1e-14,
                                                       tol_ktratio=1e-12, max_iter=500, **k)
    try:
        errors = []
        for T in range(2, 9):
            for conflicting in (True, False):
                for seed in range(3):
                    J = jacobian(T, conflicting, seed=10 * seed + T, dtype=torch.float32).double()
                    w = make("cagrad", num_tasks=T)(kernel.gram(J.float()))
                    errors.append(relative(torch.from_numpy(w) @ J, jd.CAGrad(c=0.4)(J)))
        return errors
    finally:
        cp.Problem.solve = solve


def nash() -> tuple[list[float], list[float]]:
    same, apart = [], []
    for T in range(2, 9):
        for conflicting in (True, False):
            for seed in range(6):
                reference, ours = jd.NashMTL(n_tasks=T), make("nash-mtl", num_tasks=T)
                solves, on_path = _count_nash_solves(reference), True
                for call in range(3):
                    J = jacobian(T, conflicting, seed=1000 * seed + 100 * T + 10 * call, dtype=torch.float32).double()
                    expected, w = reference(J), ours(kernel.gram(J.float()))
                    on_path = on_path and solves.pop() == ours.solves
                    (same if on_path else apart).append(relative(torch.from_numpy(w) @ J, expected))
    return same, apart


def main() -> None:
    for tight in (False, True):
        e = cagrad(tight)
        print(f"cagrad, CLARABEL {'tightened' if tight else 'default'}: {len(e)} cases, worst {max(e):.1e}, "
              f"median {np.median(e):.1e}")
    same, apart = nash()
    print(f"nash-mtl: {len(same)} on the same path, worst {max(same):.1e}, median {np.median(same):.1e}; "
          f"{len(apart)} an iteration apart, worst {max(apart) if apart else 0:.1e}")


if __name__ == "__main__":
    main()
