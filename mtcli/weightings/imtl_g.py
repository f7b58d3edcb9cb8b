"""IMTL-G (Liu et al. 2021, "Towards Impartial Multi-task Learning"): the combined gradient
has equal projections on every task's unit gradient. With u_k = g_k / |g_k| that is
g^T u_k equal for all k, whose solution on the Gram matrix is

    v = G^+ d,  d_k = |g_k| = sqrt(G_kk),   w = v / sum(v)

(zero weights when sum(v) vanishes: no direction is impartial).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtcli.weightings.base import Weighting


@dataclasses.dataclass
class IMTLG(Weighting):
    name = "imtl-g"

    def weights(self, gram, tasks):
        d = np.sqrt(np.clip(np.diag(gram), 0, None))
        v = np.linalg.pinv(gram, rcond=len(gram) * np.finfo(np.float64).eps, hermitian=True) @ d
        total = v.sum()
        return np.zeros_like(v) if abs(total) < 1e-12 else v / total
