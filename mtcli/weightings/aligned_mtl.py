"""Aligned-MTL (Senushkin et al. 2023, "Independent Component Alignment for Multi-Task
Learning"): make the task gradients orthogonal and of equal norm before summing. With
G = V diag(lambda) V^T (rank r, eigenvalues above the numerical tolerance), the balance
transformation is

    B = sqrt(lambda_min) V diag(lambda^-1/2) V^T,     w = B (1/T, ..., 1/T)

`scale` picks the eigenvalue that sets the common norm: min (the paper), median, or rmse
(the mean, as in the authors' code).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from mtcli.weightings.base import Weighting

SCALES = ("min", "median", "rmse")


@dataclasses.dataclass
class AlignedMTL(Weighting):
    name = "aligned-mtl"
    scale: Literal[SCALES] = "min"

    def weights(self, gram, tasks):
        num = len(gram)
        lam, vectors = np.linalg.eigh(gram, UPLO="U")
        rank = int(np.sum(lam > lam.max() * num * np.finfo(np.float64).eps))
        if rank == 0:
            return np.full(num, 1.0 / num)
        order = np.argsort(lam)[::-1][:rank]
        lam, vectors = lam[order], vectors[:, order]
        scale = {"min": lam[-1], "median": np.sort(lam)[(rank - 1) // 2], "rmse": lam.mean()}[self.scale]
        balance = np.sqrt(scale) * (vectors / np.sqrt(lam)) @ vectors.T
        return balance @ np.full(num, 1.0 / num)
