"""Smooth Tchebycheff scalarization (Lin et al. 2024, STCH; TorchJD's `STCH` with uniform
preference weights and no reference point): a smooth maximum of the weighted losses,

    f(L) = mu log sum_k exp(w_k L_k / mu),   w_k = 1/T,

computed with the largest term factored out (no overflow for small mu). As mu -> 0 it is the
Tchebycheff max; large mu approaches the mean.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import Field

from mtcli.weightings.base import LossWeighting


@dataclasses.dataclass
class STCH(LossWeighting):
    name = "stch"
    mu: Annotated[float, Field(gt=0)] = 1.0

    def scalarize(self, losses, tasks):
        import torch

        y = losses / len(tasks)
        top = y.max()
        return self.mu * torch.logsumexp((y - top) / self.mu, dim=-1) + top
