"""IMTL, the hybrid of Liu et al. 2021 ("Towards Impartial Multi-task Learning"): IMTL-L's
learned log-scales s_k scale the losses, e^(s_k) L_k - s_k (so the step's rows are the
gradients of e^(s_k) L_k, heads included), and IMTL-G's weights are taken on the Gram matrix
of those scaled rows: the combined gradient has equal projections on every scaled task
gradient's direction. s starts at 0 and trains with the model (the heads' optimizer group)
on its own gradient e^(s_k) L_k - 1. The two halves are the imtl-l and imtl-g methods.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtcli.weightings.base import Weighting
from mtcli.weightings.imtl_g import IMTLG
from mtcli.weightings.imtl_l import IMTLL


@dataclasses.dataclass
class IMTL(Weighting):
    name = "imtl"
    reads_losses = True

    def __post_init__(self):
        self.balance = IMTLL(num_tasks=self.num_tasks)      # the learned log-scales s
        self.log_scale = self.balance.log_scale              # the same tensor
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
        return self.balance.tensors()

    def state_dict(self):
        return self.balance.state_dict()

    def load_state_dict(self, state):
        self.balance.load_state_dict(state)
