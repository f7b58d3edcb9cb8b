"""MGDA (Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization"):
the min-norm point of the convex hull of the task gradients,

    w = argmin_{w in simplex} |sum_k w_k g_k|^2 = argmin w^T G w,

by the Frank-Wolfe solver of their Algorithm 2 (exact line search on each segment),
stopping when the step falls below `epsilon` or after `max_iters` steps.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import MAX_ITERATIONS, Weighting


@dataclasses.dataclass
class MGDA(Weighting):
    name = "mgda"
    epsilon: Annotated[float, Field(ge=0)] = 0.001
    max_iters: Annotated[int, Field(ge=1, le=MAX_ITERATIONS)] = 100

    def weights(self, gram, tasks):
        num = len(gram)
        alpha = np.full(num, 1.0 / num)
        for _ in range(self.max_iters):
            t = int(np.argmin(gram @ alpha))          # the vertex that most decreases the norm
            a = alpha @ gram[:, t]                    # <g(alpha), g_t>
            b = alpha @ gram @ alpha                  # |g(alpha)|^2
            c = gram[t, t]                            # |g_t|^2
            gamma = 1.0 if c <= a else 0.0 if b <= a else (b - a) / (b + c - 2 * a)
            alpha = (1 - gamma) * alpha
            alpha[t] += gamma
            if gamma < self.epsilon:
                break
        return alpha
