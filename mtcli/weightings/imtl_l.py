"""IMTL-L (Liu et al. 2021, "Towards Impartial Multi-task Learning", the loss-balancing half):
a learned log-scale s_k per task, trained with the model to make the scaled losses equal,

    f(L) = sum_k e^(s_k) L_k - s_k,   s initialised to 0 (TorchJD's IMTLL).
"""

from __future__ import annotations

import dataclasses

from mtcli.weightings.base import LossWeighting


@dataclasses.dataclass
class IMTLL(LossWeighting):
    name = "imtl-l"

    def __post_init__(self):
        import torch

        self.log_scale = torch.zeros(self.num_tasks, requires_grad=True)

    def scalarize(self, losses, tasks):
        s = self.log_scale[tasks].to(losses.dtype)
        return (s.exp() * losses - s).sum()

    def tensors(self):
        return [self.log_scale]

    def state_dict(self):
        return {"log_scale": self.log_scale.detach().tolist()}

    def load_state_dict(self, state):
        import torch

        with torch.no_grad():
            self.log_scale.copy_(torch.tensor(state["log_scale"], dtype=self.log_scale.dtype))
