"""MoCo (Fernando et al. 2023, "Mitigating Gradient Bias in Multi-objective Learning: A
Provably Convergent Approach"; LibMTL's MoCo, checked against an oracle written from the
paper's Algorithm 1): tracked gradient estimates y_t correct the bias of the stochastic
gradients, and the weights lambda follow a regularised MGDA step on them. At step s,

    g~_t = g_t L_t / (|g_t| + 1e-8)                      (LibMTL's normalisation)
    y_t  <- y_t - beta_s (y_t - g~_t),                   beta_s  = beta / s^beta_sigma
    lambda <- softmax(lambda - gamma_s (Y Y^T + rho I) lambda),  gamma_s = gamma / s^gamma_sigma
    out  = sum_t lambda_t y_t

|g_t| comes from the Gram pass; y is updated in place by one fused pass (ema_rows), then the
Gram of Y and the combine. State: Y (tasks x n float32: 4 bytes per task per shared
parameter), lambda (from 1/T) and the step count. A step with some tasks moves their rows
and their share of lambda.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import RowsWeighting, gather_rows, tensor_state


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


@dataclasses.dataclass
class MoCo(RowsWeighting):
    name = "moco"
    reads_losses = True
    beta: Annotated[float, Field(ge=0, le=1)] = 0.5
    beta_sigma: Annotated[float, Field(ge=0, le=10)] = 0.5
    gamma: Annotated[float, Field(ge=0, le=1e6)] = 0.1
    gamma_sigma: Annotated[float, Field(ge=0, le=10)] = 0.5
    rho: Annotated[float, Field(ge=0, le=1e6)] = 0.0

    def __post_init__(self):
        self.tracked = None
        self.lambdas = np.full(self.num_tasks, 1.0 / self.num_tasks)
        self.steps = 0

    def combine_rows(self, rows, out, tasks, gram, losses):
        from mtcli.weightings import kernel

        self.steps += 1
        norms = np.sqrt(np.clip(np.diag(gram), 0, None))
        beta = self.beta / self.steps ** self.beta_sigma
        tracked = self._state_rows("tracked", rows)
        kernel.ema_rows(rows, tracked, tasks, 1.0 - beta, losses / (norms + 1e-8))
        y = gather_rows(tracked, tasks)
        yy = kernel.gram(y) + self.rho * np.eye(len(tasks))
        gamma = self.gamma / self.steps ** self.gamma_sigma
        mass = self.lambdas[tasks].sum()
        part = self.lambdas[tasks] / mass
        self.lambdas[tasks] = mass * softmax(part - gamma * yy @ part)
        weights = self.lambdas[tasks] / mass
        kernel.combine(y, weights, out)
        return weights, None

    def state_dict(self):
        return {"tracked": tensor_state(self.tracked), "lambdas": self.lambdas.tolist(), "steps": self.steps}

    def load_state_dict(self, state):
        self.tracked = state["tracked"]
        self.lambdas = np.asarray(state["lambdas"], dtype=np.float64)
        self.steps = int(state["steps"])
