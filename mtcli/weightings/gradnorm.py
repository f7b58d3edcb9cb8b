"""GradNorm (Chen et al. 2018): learned loss weights w_k that keep the tasks' weighted gradient
norms at a common scale, moved towards tasks that train slower. The model trains on
sum_k w_k L_k (so the step's rows are the gradients of w_k L_k, heads included); from their
Gram matrix G the norms are G_W(k) = |w_k g_k| = sqrt(G_kk), and with

    Lt_k = L_k / L_k(0),   r_k = Lt_k / mean(Lt),   target_k = mean(G_W) r_k^alpha (held constant),
    L_grad = sum_k |G_W(k) - target_k|,

the weights' gradient dL_grad/dw_k = sign(G_W(k) - target_k) |g_k| goes to the optimizer (w
trains with the model, in the heads' group, as the paper's implementations do), and before
the next step the weights are renormalised to sum to T (a weight the update made negative
stops at 0). L_k(0) is the task's loss the first time a step holds it. The combination
weights are 1: the rows are already weighted. State: w (in the checkpoint) and L(0).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import Weighting


@dataclasses.dataclass
class GradNorm(Weighting):
    name = "gradnorm"
    reads_losses = True
    alpha: Annotated[float, Field(ge=0, le=10)] = 1.5

    def __post_init__(self):
        import torch

        self.w = torch.ones(self.num_tasks, dtype=torch.float64, requires_grad=True)
        self.initial = np.full(self.num_tasks, np.nan)   # L_k(0), NaN until task k is seen

    def loss_scales(self) -> np.ndarray:
        """The weights this step uses: last step's update, renormalised to sum to T."""
        import torch

        with torch.no_grad():
            self.w.clamp_(min=0)
            total = float(self.w.sum())
            self.w.mul_(self.num_tasks / total) if total > 0 else self.w.fill_(1.0)
        return self.w.detach().numpy().copy()

    def weights(self, gram, tasks, losses):
        import torch

        w = self.w.detach().numpy()[tasks]
        first = np.isnan(self.initial[tasks])
        self.initial[np.asarray(tasks)[first]] = losses[first]
        norms = np.sqrt(np.clip(np.diag(gram), 0, None))             # |w_k g_k|
        ratio = losses / np.where(self.initial[tasks] > 0, self.initial[tasks], 1.0)
        target = norms.mean() * (ratio / ratio.mean()) ** self.alpha if ratio.mean() > 0 else norms
        grad = np.zeros(self.num_tasks)
        grad[tasks] = np.sign(norms - target) * np.where(w > 0, norms / np.where(w > 0, w, 1.0), 0.0)
        self.w.grad = torch.from_numpy(grad)
        return np.ones(len(tasks))

    def tensors(self):
        return [self.w]

    def state_dict(self):
        return {"w": self.w.detach().tolist(), "initial": self.initial.tolist()}

    def load_state_dict(self, state):
        import torch

        with torch.no_grad():
            self.w.copy_(torch.tensor(state["w"], dtype=torch.float64))
        self.initial = np.asarray(state["initial"], dtype=np.float64)
