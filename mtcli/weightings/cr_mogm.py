"""CR-MOGM (Zhou et al. 2022, "On the Convergence of Stochastic Multi-Objective Gradient
Manipulation and Beyond"; TorchJD's `CRMOGMWeighting` around MGDA): MGDA's weights smoothed by
an exponential moving average across steps, which makes the stochastic method converge,

    lambda_t = alpha lambda_(t-1) + (1 - alpha) lambda_hat_t,   lambda_hat_t = MGDA(G_t),

starting from the first step's MGDA weights. The running weights (per task of the run) are the
state; a step with only some tasks moves only theirs.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import Weighting
from mtcli.weightings.mgda import MGDA


@dataclasses.dataclass
class CRMOGM(Weighting):
    name = "cr-mogm"
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.9

    def __post_init__(self):
        self.inner = MGDA(num_tasks=self.num_tasks)
        self.running = np.full(self.num_tasks, np.nan)

    def weights(self, gram, tasks):
        fresh = self.inner.weights(gram, tasks)
        previous = self.running[tasks]
        previous = np.where(np.isnan(previous), fresh, previous)
        self.running[tasks] = self.alpha * previous + (1 - self.alpha) * fresh
        return self.running[tasks]

    def state_dict(self):
        return {"running": [None if np.isnan(v) else float(v) for v in self.running]}

    def load_state_dict(self, state):
        self.running = np.array([np.nan if v is None else v for v in state["running"]], dtype=np.float64)
