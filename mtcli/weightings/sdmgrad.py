"""SDMGrad (Xiao et al. 2023, "Direction-oriented Multi-objective Learning"; TorchJD's
`SDMGrad` on the Gram matrix of one batch): weights on the simplex found by n_iter projected
gradient steps with momentum on the Gram matrix normalised by the mean gradient norm,
regularised towards the preference (uniform) by lambda:

    A = G / (mean_t |g_t|)^2,   v <- momentum v + A (w + lambda w~),   w <- proj_simplex(w - lr v)
    weights = (w + lambda w~) / (1 + lambda),   w warm-started from the last step (from 1/T).

The paper draws the two gradients of A from independent batches; like TorchJD's, this takes
the step's one batch. State: w (per task of the run).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import MAX_ITERATIONS, Weighting


def project_onto_simplex(y: np.ndarray) -> np.ndarray:
    """The Euclidean projection of y onto {w >= 0, sum w = 1} (sort-based, Held et al.)."""
    ordered = np.sort(y)[::-1]
    cumulative = np.cumsum(ordered) - 1.0
    k = np.arange(1, len(y) + 1)
    last = np.nonzero(ordered - cumulative / k > 0)[0][-1]
    return np.maximum(y - cumulative[last] / (last + 1), 0.0)


@dataclasses.dataclass
class SDMGrad(Weighting):
    name = "sdmgrad"
    lr: Annotated[float, Field(gt=0, le=1e6)] = 10.0
    momentum: Annotated[float, Field(ge=0, le=0.999)] = 0.5
    n_iter: Annotated[int, Field(ge=1, le=MAX_ITERATIONS)] = 20
    lambda_: Annotated[float, Field(ge=0, le=1e6)] = 0.3

    def __post_init__(self):
        self.w = np.full(self.num_tasks, 1.0 / self.num_tasks)

    def weights(self, gram, tasks):
        preference = np.full(len(tasks), 1.0 / len(tasks))
        mass = self.w[tasks].sum()
        w = self.w[tasks] / mass if mass > 0 else preference.copy()
        scale = np.sqrt(np.clip(np.diag(gram), 0, None)).mean()
        a = gram / (scale ** 2 + 1e-8)
        velocity = None
        for _ in range(self.n_iter):
            step = a @ (w + self.lambda_ * preference)
            velocity = step if velocity is None else self.momentum * velocity + step
            w = project_onto_simplex(w - self.lr * velocity)
        self.w[tasks] = w * (mass if mass > 0 else 1.0)
        return (w + self.lambda_ * preference) / (1.0 + self.lambda_)

    def state_dict(self):
        return {"w": self.w.tolist()}

    def load_state_dict(self, state):
        self.w = np.asarray(state["w"], dtype=np.float64)
