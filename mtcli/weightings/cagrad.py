"""CAGrad (Liu et al. 2021, "Conflict-Averse Gradient Descent for Multi-task Learning"):
the update that maximises the worst task's improvement within a ball around the average
gradient g0, radius c |g0|. Its dual is a problem over the simplex,

    w* = argmin_{w in simplex}  g_w . g0 + sqrt(phi) |g_w|,   g_w = sum_k w_k g_k,
    sqrt(phi) = c |g0|,          result  g0 + (sqrt(phi) / |g_w*|) g_w*

so the weights are 1/T + (sqrt(phi) / |g_w*|) w*. On G (scaled by its trace, as in
TorchJD): g_w . g0 = w^T G 1 / T, |g_w|^2 = w^T G w, |g0|^2 = 1^T G 1 / T^2. The convex
problem over the simplex is solved by SLSQP (scipy) to 1e-15.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import Weighting


@dataclasses.dataclass
class CAGrad(Weighting):
    name = "cagrad"
    c: Annotated[float, Field(ge=0)] = 0.4
    norm_eps: Annotated[float, Field(ge=0)] = 1e-4

    def weights(self, gram, tasks):
        from scipy.optimize import minimize

        num = len(gram)
        trace = np.trace(gram)
        gram = np.zeros_like(gram) if trace < self.norm_eps else gram / trace
        g0_dot = gram @ np.full(num, 1.0 / num)             # g_k . g0
        radius = self.c * np.sqrt(max(np.sum(g0_dot) / num, 0.0))

        def norm(w):
            return np.sqrt(max(w @ gram @ w, 1e-300))

        def cost(w):
            return g0_dot @ w + radius * norm(w)

        def gradient(w):
            return g0_dot + radius * (gram @ w) / norm(w)

        start = np.full(num, 1.0 / num)
        result = minimize(cost, start, jac=gradient, method="SLSQP", bounds=[(0, None)] * num,
                          constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(num)}],
                          options={"ftol": 1e-15, "maxiter": 1000})
        w = np.clip(result.x, 0, None)
        w /= w.sum()
        g_w_norm = np.sqrt(max(w @ gram @ w, 0.0))
        if g_w_norm < self.norm_eps:
            return np.zeros(num)  # at a Pareto-stationary point: no direction improves every task
        return np.full(num, 1.0 / num) + radius / g_w_norm * w
