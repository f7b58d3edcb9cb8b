"""COSMOS (Ruchte & Grabocka 2021, "Scalable Pareto Front Approximation"), its scalarization with
a uniform preference (TorchJD's `COSMOS`): the weighted sum minus lambda times the cosine
between the preference and the losses, which pulls the losses towards the preference ray,

    f(L) = w . L - lambda cos(w, L),   w_k = 1/T.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import Field

from mtcli.weightings.base import LossWeighting


@dataclasses.dataclass
class COSMOS(LossWeighting):
    name = "cosmos"
    lambda_: Annotated[float, Field(ge=0)] = 2.0

    def scalarize(self, losses, tasks):
        import torch

        w = losses.new_full((len(tasks),), 1.0 / len(tasks))
        return w @ losses - self.lambda_ * torch.nn.functional.cosine_similarity(w, losses, dim=0)
