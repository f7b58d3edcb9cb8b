"""MoDo (Chen et al. 2023, "Three-Way Trade-Off in Multi-Objective Learning: Optimization,
Generalization and Conflict-Avoidance", Algorithm 1; LibMTL's MoDo, checked against an oracle
written from the paper): multi-objective gradient descent with double sampling. Each step takes
two independent gradient samples of every task, J1 and J2 (T x n), and moves the weights by a
projected step on an unbiased estimate of the MGDA objective's gradient:

    lambda <- proj_simplex(lambda - gamma (J1 J2^T lambda + rho lambda))
    update direction  sum_t lambda_t (J1_t + J2_t) / 2           (the paper's third sample:
                                                                  both samples' mean)

The step supplies the samples (`draws = 2`): each task's batch is split into two halves, every
other row each, backpropagated into rows of their own, so the gradient still covers the whole
batch and each head gets its own task's full-batch gradient. J1 J2^T is the off-diagonal block
of the Gram matrix of those 2T rows, from the kernel's first pass; the combine is its second
(weights lambda_t / 2 on both of a task's rows). A task with a single labeled row in a step
uses that row for both samples. State: lambda (per task of the run, from 1/T); a step with some
of the tasks moves their share of it. The (T, n) task-gradient buffer holds 2T rows.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import Weighting
from mtcli.weightings.sdmgrad import project_onto_simplex


@dataclasses.dataclass
class MoDo(Weighting):
    name = "modo"
    draws = 2
    gamma: Annotated[float, Field(ge=0, le=1e6)] = 0.1
    rho: Annotated[float, Field(ge=0, le=1e6)] = 0.0

    def __post_init__(self):
        self.lambdas = np.full(self.num_tasks, 1.0 / self.num_tasks)

    def weights(self, gram, tasks):
        cross = gram[0::2, 1::2]   # J1 J2^T: rows 2t and 2t + 1 are task t's two samples
        mass = self.lambdas[tasks].sum()
        part = self.lambdas[tasks] / mass if mass > 0 else np.full(len(tasks), 1.0 / len(tasks))
        part = project_onto_simplex(part - self.gamma * (cross @ part + self.rho * part))
        if mass > 0:   # (a step whose tasks all hold no weight weighs them evenly, and leaves them so)
            self.lambdas[tasks] = part * mass
        return part

    def state_dict(self):
        return {"lambdas": self.lambdas.tolist()}

    def load_state_dict(self, state):
        self.lambdas = np.asarray(state["lambdas"], dtype=np.float64)
