"""Krum (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient
Descent"; TorchJD's `Krum`): each task gradient is scored by the sum of its distances to its
T - f - 2 nearest others (f: the tolerated outliers, `n_byzantine`), and the `n_selected`
best-scored gradients are averaged. Distances come from G: |g_i - g_j|^2 = G_ii + G_jj - 2 G_ij.
A step with fewer than f + 3 tasks, where Krum is not defined, takes their mean.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import MAX_ITERATIONS, Weighting


@dataclasses.dataclass
class Krum(Weighting):
    name = "krum"
    n_byzantine: Annotated[int, Field(ge=0, le=MAX_ITERATIONS)] = 0
    n_selected: Annotated[int, Field(ge=1, le=MAX_ITERATIONS)] = 1

    def weights(self, gram, tasks):
        num = len(gram)
        if num < self.n_byzantine + 3 or num < self.n_selected:
            return np.full(num, 1.0 / num)
        norms = np.diag(gram)
        distances = np.sqrt(np.clip(norms[None, :] + norms[:, None] - 2 * gram, 0, None))
        nearest = np.sort(distances, axis=1, kind="stable")[:, 1:num - self.n_byzantine - 1]  # without itself
        chosen = np.argsort(nearest.sum(axis=1), kind="stable")[:self.n_selected]
        weights = np.zeros(num)
        weights[chosen] = 1.0 / self.n_selected
        return weights
