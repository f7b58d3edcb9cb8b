"""FairGrad (Ban & Ji 2024, "Fair Resource Allocation in Multi-Task Learning", Equation 4):
alpha-fair utility maximisation, whose optimality condition on the weights is

    G w = w^(-1/alpha)        (elementwise power, w > 0)

F(w) = G w - w^(-1/alpha) is strictly monotone on w > 0 (G is PSD, the power term's
derivative a positive diagonal), so it has at most one root: damped Newton from the
uniform weights finds it to float64 precision in a few T x T solves. Where there is no
positive root, the bounded nonlinear least-squares problem of the authors' code (scipy,
from the uniform weights) gives the closest point. alpha = 0 is the plain mean; alpha = 1
proportional fairness; alpha -> inf max-min fairness.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import MAX_ITERATIONS, Weighting


@dataclasses.dataclass
class FairGrad(Weighting):
    name = "fairgrad"
    alpha: Annotated[float, Field(ge=0)] = 1.0
    max_iters: Annotated[int, Field(ge=0, le=MAX_ITERATIONS)] = 0   # solver evaluations; 0: scipy's default (100 T)

    def weights(self, gram, tasks):
        num = len(gram)
        uniform = np.full(num, 1.0 / num)
        if self.alpha == 0:
            return uniform

        def residual(w):
            return gram @ w - np.power(w, -1.0 / self.alpha)

        root = _newton_root(gram, self.alpha, uniform, residual)
        if root is not None:
            return root
        from scipy.optimize import least_squares

        return least_squares(residual, uniform, bounds=(0, np.inf), max_nfev=self.max_iters or None).x


def _newton_root(gram: np.ndarray, alpha: float, start: np.ndarray, residual, steps: int = 100) -> np.ndarray | None:
    """The positive root of G w = w^(-1/alpha) by Newton's method, halving steps to stay
    positive and to decrease |F|; None if it does not converge."""
    w, r = start.copy(), residual(start)
    for _ in range(steps):
        size = np.linalg.norm(r)
        if size <= 1e-13 * max(1.0, np.linalg.norm(gram @ w)):
            return w
        jacobian = gram + np.diag(np.power(w, -1.0 / alpha - 1.0) / alpha)
        try:
            step = np.linalg.solve(jacobian, -r)
        except np.linalg.LinAlgError:
            return None
        t = 1.0
        while t > 1e-12 and (np.any(w + t * step <= 0) or np.linalg.norm(residual(w + t * step)) > (1 - 1e-4 * t) * size):
            t *= 0.5
        if t <= 1e-12:
            return None
        w = w + t * step
        r = residual(w)
    return None
