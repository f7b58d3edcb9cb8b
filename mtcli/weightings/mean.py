"""Mean of the task losses (linear scalarization with equal weights; TorchJD's `Mean`, LibMTL's EW):

    f(L) = (1/T) sum_k L_k
"""

from __future__ import annotations

import dataclasses

from mtcli.weightings.base import LossWeighting


@dataclasses.dataclass
class Mean(LossWeighting):
    name = "mean"
    reads_gram = False

    def scalarize(self, losses, tasks):
        return losses.mean()
