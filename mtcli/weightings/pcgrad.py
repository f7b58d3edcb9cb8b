"""PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning"), Algorithm 1:

    for each task i:                        g_i' = g_i
        for j in a random order of the other tasks:
            if g_i' . g_j < 0:  g_i' -= (g_i' . g_j / |g_j|^2) g_j
    return sum_i g_i'

Each g_i' is sum_k c_ik g_k, and g_i' . g_j = c_i . G[:, j], so the loop runs on the Gram
matrix alone and the result is sum_k w_k g_k with w = sum_i c_i.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtcli.weightings.base import RandomOrder, Weighting


def pcgrad_weights(gram: np.ndarray, orders: list[list[int]]) -> np.ndarray:
    """Algorithm 1 on G: orders[i] is the order in which task i projects out the others."""
    num = len(gram)
    weights = np.zeros(num)
    for i in range(num):
        c = np.zeros(num)
        c[i] = 1.0
        for j in orders[i]:
            dot = c @ gram[:, j]  # g_i' . g_j
            if dot < 0 and gram[j, j] > 0:
                c[j] -= dot / gram[j, j]
        weights += c
    return weights


@dataclasses.dataclass
class PCGrad(Weighting):
    name = "pcgrad"
    seed: int = 0

    def __post_init__(self):
        self.order = RandomOrder(self.seed)

    def weights(self, gram, tasks):
        num = len(gram)
        orders = [[j for j in self.order.permutation(num) if j != i] for i in range(num)]
        return pcgrad_weights(gram, orders)

    def state_dict(self):
        return self.order.state_dict()

    def load_state_dict(self, state):
        self.order.load_state_dict(state)
