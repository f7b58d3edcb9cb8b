"""FairGrad (Ban & Ji 2024, "Fair Resource Allocation in Multi-Task Learning", Equation 4):
alpha-fair utility maximisation, whose optimality condition on the weights is

    G w = w^(-1/alpha)        (elementwise power, w > 0)

solved as a bounded nonlinear least-squares problem from the uniform weights, as in the
authors' code. alpha = 0 is the plain mean; alpha = 1 proportional fairness; alpha -> inf
max-min fairness.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtcli.weightings.base import Weighting


@dataclasses.dataclass
class FairGrad(Weighting):
    name = "fairgrad"
    alpha: float = 1.0
    max_iters: int = 0            # solver evaluations; 0: scipy's default (100 T)

    def weights(self, gram, tasks):
        num = len(gram)
        uniform = np.full(num, 1.0 / num)
        if self.alpha == 0:
            return uniform
        from scipy.optimize import least_squares

        def residual(w):
            return gram @ w - np.power(w, -1.0 / self.alpha)

        return least_squares(residual, uniform, bounds=(0, np.inf), max_nfev=self.max_iters or None).x
