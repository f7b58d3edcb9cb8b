"""GradVac (Wang et al. 2021, "Gradient Vaccine"): where PCGrad only removes conflict
(cosine < 0), GradVac pulls every pair's cosine up to a target phi_hat_ij, an exponential
moving average of the cosines seen so far (rate beta):

    if phi_ij < phi_hat_ij:
        g_i' += |g_i'| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / (|g_j| sqrt(1 - phi_hat^2)) g_j
    phi_hat_ij = (1 - beta) phi_hat_ij + beta phi_ij

As in PCGrad each g_i' = sum_k c_ik g_k, and norms and dot products come from G. The
targets phi_hat (per pair of the run's tasks) and the shuffle are the state.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import RandomOrder, Weighting


@dataclasses.dataclass
class GradVac(Weighting):
    name = "gradvac"
    beta: Annotated[float, Field(ge=0, le=1)] = 0.01
    eps: Annotated[float, Field(ge=0)] = 1e-8
    seed: int = 0

    def __post_init__(self):
        self.order = RandomOrder(self.seed)
        self.targets = np.zeros((self.num_tasks, self.num_tasks))

    def weights(self, gram, tasks):
        num = len(gram)
        c = np.eye(num)
        for i in range(num):
            c_g = c[i] @ gram                               # g_i' . g_k for every k
            others = [j for j in range(num) if j != i]
            for j in (others[k] for k in self.order.permutation(num - 1)):
                norm_i = np.sqrt(max(c_g @ c[i], 0.0))
                norm_j = np.sqrt(max(gram[j, j], 0.0))
                phi = c_g[j] / (norm_i * norm_j + self.eps)
                target = self.targets[tasks[i], tasks[j]]
                if phi < target:
                    root_phi, root_target = np.sqrt(max(1 - phi * phi, 0.0)), np.sqrt(max(1 - target * target, 0.0))
                    step = norm_i * (target * root_phi - phi * root_target) / (norm_j * root_target + self.eps)
                    c[i, j] += step
                    c_g = c_g + step * gram[j]
                self.targets[tasks[i], tasks[j]] = (1 - self.beta) * target + self.beta * phi
        return c.sum(axis=0)

    def state_dict(self):
        return {**self.order.state_dict(), "targets": self.targets.tolist()}

    def load_state_dict(self, state):
        self.order.load_state_dict(state)
        self.targets = np.asarray(state["targets"], dtype=np.float64)
