"""IMTL, the hybrid of Liu et al. 2021 ("Towards Impartial Multi-task Learning"): IMTL-L's
learned log-scales s_k scale the losses, e^(s_k) L_k - s_k (so the step's rows are the
gradients of e^(s_k) L_k, heads included), and IMTL-G's weights are taken on the Gram matrix
of those scaled rows: the combined gradient has equal projections on every scaled task
gradient's direction. s starts at 0 and trains with the model (the heads' optimizer group)
on its own gradient e^(s_k) L_k - 1.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtcli.weightings.base import Weighting
from mtcli.weightings.imtl_g import IMTLG


@dataclasses.dataclass
class IMTL(Weighting):
    name = "imtl"
    reads_losses = True

    def __post_init__(self):
        import torch

        self.log_scale = torch.zeros(self.num_tasks, requires_grad=True)
        self.impartial = IMTLG(num_tasks=self.num_tasks)

    def loss_scales(self) -> np.ndarray:
        return self.log_scale.detach().double().exp().numpy()

    def weights(self, gram, tasks, losses):
        import torch

        s = self.log_scale.detach().double()
        grad = torch.zeros_like(s)
        grad[tasks] = s[tasks].exp() * torch.as_tensor(np.asarray(losses, dtype=np.float64)) - 1
        self.log_scale.grad = grad.to(self.log_scale.dtype)
        return self.impartial.weights(gram, tasks)

    def tensors(self):
        return [self.log_scale]

    def state_dict(self):
        return {"log_scale": self.log_scale.detach().tolist()}

    def load_state_dict(self, state):
        import torch

        with torch.no_grad():
            self.log_scale.copy_(torch.tensor(state["log_scale"], dtype=self.log_scale.dtype))
