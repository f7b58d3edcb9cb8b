"""Projection onto the dual cone of the task gradients, in weight space.

For G = J J^T and a weight vector u, the projection of J^T u onto the cone
{x : J x >= 0} is J^T v with (Jacobian Descent, Quinton & Rey 2024, Proposition 1)

    v = argmin_v  v^T G v   subject to  v >= u.

G is first scaled by its trace and given `reg_eps` on the diagonal, so the problem is
strictly convex whatever the gradients. A bound-constrained QP with T <= 64 variables:
solved exactly by the primal active-set method (Nocedal & Wright, Algorithm 16.3),
which ends after finitely many small linear solves.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import Weighting

NORM_EPS = 1e-4
REG_EPS = 1e-4


def conditioned(gram: np.ndarray, norm_eps: float = NORM_EPS, reg_eps: float = REG_EPS) -> np.ndarray:
    """G / trace(G) (zero when the trace is below norm_eps) + reg_eps I."""
    trace = np.trace(gram)
    scaled = np.zeros_like(gram) if trace < norm_eps else gram / trace
    return scaled + reg_eps * np.eye(len(gram))


@dataclasses.dataclass
class DualConeWeighting(Weighting):
    """Base of the weightings built on the projection (UPGrad, DualProj): its two constants."""
    norm_eps: Annotated[float, Field(ge=0)] = NORM_EPS
    reg_eps: Annotated[float, Field(ge=0)] = REG_EPS

    def conditioned(self, gram: np.ndarray) -> np.ndarray:
        return conditioned(gram, self.norm_eps, self.reg_eps)


def project(u: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """argmin_v v^T G v subject to v >= u, for a positive definite G."""
    num = len(u)
    v = u.astype(np.float64).copy()          # feasible start, every bound active
    active = np.ones(num, dtype=bool)
    for _ in range(10 * num + 10):
        free = ~active
        step = np.zeros(num)
        if free.any():
            gradient = gram @ v
            step[free] = np.linalg.solve(gram[np.ix_(free, free)], -gradient[free])
        if np.max(np.abs(step), initial=0.0) <= 1e-15 * max(1.0, np.max(np.abs(v))):
            multipliers = gram @ v           # d(v^T G v / 2)/dv on the active bounds
            multipliers[free] = np.inf
            k = int(np.argmin(multipliers))
            if multipliers[k] >= -1e-15 * max(1.0, np.max(np.abs(multipliers[active]))):
                return v
            active[k] = False                # release the bound that blocks descent most
            continue
        blocking = free & (step < 0)
        ratios = np.where(blocking, (u - v) / np.where(blocking, step, -1.0), np.inf)
        k = int(np.argmin(ratios))
        alpha = min(1.0, ratios[k])
        v = v + alpha * step
        if alpha < 1.0:
            v[k] = u[k]
            active[k] = True
    raise RuntimeError("dual cone projection did not converge")
