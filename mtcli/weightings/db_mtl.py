"""DB-MTL (Lin et al. 2023, "Dual-Balancing for Multi-Task Learning"; LibMTL's DB_MTL,
checked against an oracle written from the paper): the losses are balanced by taking their
logarithm (each task's gradient is that of log(L_t + 1e-8), g_t / (L_t + 1e-8), the heads'
too), and the gradients' magnitudes by scaling every task's moving average to the largest:

    h_t <- beta_s h_t + (1 - beta_s) g_t / (L_t + 1e-8),   beta_s = beta / s^beta_sigma
    alpha_t = max_j |h_j| / (|h_t| + 1e-8),   out = sum_t alpha_t h_t

One fused pass updates h in place (ema_rows), then the Gram of h (its norms) and the combine.
State: h (tasks x n float32: 4 bytes per task per shared parameter) and the step count.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import RowsWeighting, gather_rows, tensor_state


@dataclasses.dataclass
class DBMTL(RowsWeighting):
    name = "db-mtl"
    reads_losses = True
    beta: Annotated[float, Field(ge=0, le=1)] = 0.9
    beta_sigma: Annotated[float, Field(ge=0, le=10)] = 0.5

    def __post_init__(self):
        self.average = None
        self.steps = 0

    def combine_rows(self, rows, out, tasks, gram, losses):
        from mtcli.weightings import kernel

        self.steps += 1
        beta = self.beta / self.steps ** self.beta_sigma
        log_factors = 1.0 / (np.asarray(losses, dtype=np.float64) + 1e-8)   # d log(L + eps) / dL
        average = self._state_rows("average", rows)
        kernel.ema_rows(rows, average, tasks, beta, log_factors)
        h = gather_rows(average, tasks)
        norms = np.sqrt(np.clip(np.diag(kernel.gram(h)), 0, None))
        weights = norms.max() / (norms + 1e-8)
        kernel.combine(h, weights, out)
        return weights, log_factors

    def state_dict(self):
        return {"average": tensor_state(self.average), "steps": self.steps}

    def load_state_dict(self, state):
        self.average = state["average"]
        self.steps = int(state["steps"])
