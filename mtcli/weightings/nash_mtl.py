"""Nash-MTL (Navon et al. 2022, "Multi-Task Learning as a Bargaining Game"): the Nash
bargaining solution, the weights a > 0 with

    G a = 1 / a        (elementwise),

found as in the paper's Algorithm 1 by a sequence of convex problems that linearise the
concave part phi(a) = sum_i log a_i + log (G a)_i around the previous iterate a_prev:

    min_a  1^T G a + phi'(a_prev) (a - a_prev) / s   subject to  s a_i (G a)_i >= 1,  a >= 0

with G scaled by s = |G|_F, up to `optim_niter` times per step, warm-started from the last
step's weights (the state). The update's norm is then clipped to `max_norm`. Each convex
problem is solved by SLSQP (scipy).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import MAX_ITERATIONS, Weighting


@dataclasses.dataclass
class NashMTL(Weighting):
    name = "nash-mtl"
    max_norm: Annotated[float, Field(ge=0)] = 1.0
    update_weights_every: Annotated[int, Field(ge=1, le=MAX_ITERATIONS)] = 1
    optim_niter: Annotated[int, Field(ge=1, le=MAX_ITERATIONS)] = 20

    def __post_init__(self):
        self.alpha = np.ones(self.num_tasks)
        self.calls = 0
        self.solves = 0        # convex problems solved at the last update (for tests and curiosity)

    def weights(self, gram, tasks):
        if self.calls % self.update_weights_every == 0:
            scale = np.linalg.norm(gram)
            self.alpha[tasks] = self._bargain(gram / scale if scale > 0 else gram, scale, self.alpha[tasks])
        self.calls += 1
        alpha = self.alpha[tasks].copy()
        norm = np.sqrt(max(alpha @ gram @ alpha, 0.0))
        if self.max_norm > 0 and norm > self.max_norm:
            alpha *= self.max_norm / norm
        return alpha

    def _bargain(self, gram: np.ndarray, scale: float, alpha: np.ndarray) -> np.ndarray:
        for self.solves in range(1, self.optim_niter + 1):
            solved = self._linearised_step(gram, scale, alpha)
            converged = (np.linalg.norm(gram @ alpha - 1 / (alpha + 1e-10)) < 1e-3
                         or np.linalg.norm(solved - alpha) < 1e-6)
            if converged:
                break
            alpha = solved
        return alpha

    @staticmethod
    def _linearised_step(gram: np.ndarray, scale: float, prev: np.ndarray) -> np.ndarray:
        """One convex problem, in log coordinates a = exp(x) (the constraint needs a > 0), where
        it reads log s + x_i + log (G e^x)_i >= 0. Below `floor`, log r continues as its tangent
        line, so the constraint stays smooth and informative where (G a)_i <= 0 (conflicting
        tasks can put the warm start there)."""
        from scipy.optimize import minimize

        slope = (1 / prev + (1 / (gram @ prev)) @ gram) / scale
        column_sums = gram.sum(axis=0)
        floor = 1e-6 * max(np.abs(gram).max(), 1e-300)

        def cost(x):
            return column_sums @ np.exp(x) + slope @ (np.exp(x) - prev)

        def cost_gradient(x):
            return (column_sums + slope) * np.exp(x)

        def bargain(x):
            reach = gram @ np.exp(x)
            log_reach = np.where(reach > floor, np.log(np.maximum(reach, floor)), np.log(floor) + (reach - floor) / floor)
            return np.log(scale) + x + log_reach

        def bargain_jacobian(x):
            a = np.exp(x)
            reach = gram @ a
            return np.eye(len(x)) + gram * a[None, :] / np.maximum(reach, floor)[:, None]

        start = np.log(np.clip(prev, 1e-12, None))
        with np.errstate(over="ignore", invalid="ignore"):  # an unbounded problem (a task against all) runs off
            result = minimize(cost, start, jac=cost_gradient, method="SLSQP",
                              constraints=[{"type": "ineq", "fun": bargain, "jac": bargain_jacobian}],
                              options={"ftol": 1e-15, "maxiter": 1000})
        if not np.all(result.x < 700):  # e^700 is near float64's limit: the problem had no bounded solution
            return prev
        # Status 8 (no descent left for the line search) is SLSQP at the limit of float64: keep
        # the point if it is feasible; any other failure keeps the warm start, as TorchJD does.
        solved = result.success or (result.status == 8 and np.min(bargain(result.x)) > -1e-8)
        return np.exp(result.x) if solved else prev

    def state_dict(self):
        return {"alpha": self.alpha.tolist(), "calls": self.calls}

    def load_state_dict(self, state):
        self.alpha = np.asarray(state["alpha"], dtype=np.float64)
        self.calls = int(state["calls"])
