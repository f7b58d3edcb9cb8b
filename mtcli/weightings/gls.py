"""Geometric loss strategy (Chennupati et al. 2019, GLS; TorchJD's `GeometricMean`):

    f(L) = (prod_k L_k)^(1/T) = exp(mean_k log L_k),

so each task's weight is f / (T L_k): a task whose loss is small weighs more.
"""

from __future__ import annotations

import dataclasses

from mtcli.weightings.base import LossWeighting


@dataclasses.dataclass
class GLS(LossWeighting):
    name = "gls"

    def scalarize(self, losses, tasks):
        return losses.clamp_min(1e-30).log().mean().exp()
