"""ConFIG (Liu et al. 2024, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
Networks"; TorchJD's `ConFIG`): the direction that makes equal angles with every task's unit
gradient, scaled by the sum of the gradients' projections on it,

    u_k = g_k / |g_k|,   b = pinv(U) 1,   v = b / |b|,   g = (sum_k g_k . v) v.

On G: pinv(U) 1 = U^T a with a = pinv(D^-1/2 G D^-1/2) 1 (D the diagonal of G), |b|^2 = a^T
Ghat a, g_k . b = sum_j a_j G_kj / |g_j|, so g = sum_j w_j g_j with w_j = s a_j / (|g_j| |b|),
s = (sum_k g_k . b) / |b|. A zero gradient has no direction and weight 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtcli.weightings.base import Weighting


@dataclasses.dataclass
class ConFIG(Weighting):
    name = "config"

    def weights(self, gram, tasks):
        norms = np.sqrt(np.clip(np.diag(gram), 0, None))
        scale = np.where(norms > 0, 1 / np.where(norms > 0, norms, 1), 0.0)
        unit_gram = gram * np.outer(scale, scale)
        a = np.linalg.pinv(unit_gram, hermitian=True) @ np.ones(len(gram))
        length_b = np.sqrt(max(a @ unit_gram @ a, 0.0))
        if length_b == 0:
            return np.zeros(len(gram))
        coefficients = a * scale                       # b = sum_j coefficients_j g_j
        projections = gram @ coefficients / length_b   # g_k . v
        return projections.sum() * coefficients / length_b
