"""Uncertainty weighting (Kendall, Gal & Cipolla 2018): a learned log-variance s_k per task,

    f(L) = sum_k (1/2) e^(-s_k) L_k + (1/2) s_k,

s initialised to 0 (uniform weights, as TorchJD; LibMTL starts at -0.5) and trained with the
model, in the heads' optimizer group. The heads' losses are scaled too, as the definition says.
"""

from __future__ import annotations

import dataclasses

from mtcli.weightings.base import LossWeighting


@dataclasses.dataclass
class UW(LossWeighting):
    name = "uw"

    def __post_init__(self):
        import torch

        self.log_var = torch.zeros(self.num_tasks, requires_grad=True)

    def scalarize(self, losses, tasks):
        s = self.log_var[tasks].to(losses.dtype)
        return (0.5 * s.neg().exp() * losses + 0.5 * s).sum()

    def tensors(self):
        return [self.log_var]

    def state_dict(self):
        return {"log_var": self.log_var.detach().tolist()}

    def load_state_dict(self, state):
        import torch

        with torch.no_grad():
            self.log_var.copy_(torch.tensor(state["log_var"], dtype=self.log_var.dtype))
