"""ExcessMTL (He et al. 2024, "Robust Multi-Task Learning with Excess Risks"; TorchJD's
`ExcessMTL`): each task's excess risk is estimated from a second-order expansion with the
accumulated squared gradients S (an AdaGrad-like diagonal), w_t = sum_k g_tk^2 / sqrt(S_tk + 1e-7),
scaled by the first step's (or the warm-up's mean) estimate, and the weights take an
exponentiated-gradient step, lambda = softmax(log lambda + eta w), from 1/T.

One fused kernel pass updates S in place and returns w; then the kernel's combine. State: S
(tasks x n float32: 4 bytes per task per shared parameter), lambda, the baseline, the warm-up
sums and the step count. A step with some tasks moves their share of lambda only.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import MAX_ITERATIONS, RowsWeighting, tensor_state


@dataclasses.dataclass
class ExcessMTL(RowsWeighting):
    name = "excess-mtl"
    robust_step_size: Annotated[float, Field(gt=0, le=1e6)] = 1.0
    n_warmup_steps: Annotated[int, Field(ge=0, le=MAX_ITERATIONS)] = 0

    def __post_init__(self):
        self.squares = None
        self.weights = np.full(self.num_tasks, 1.0 / self.num_tasks)
        self.baseline = np.full(self.num_tasks, np.nan)
        self.warmup_sum = np.zeros(self.num_tasks)
        self.steps = 0

    def combine_rows(self, rows, out, tasks, gram, losses):
        from mtcli.weightings import kernel

        squares = self._state_rows("squares", rows)
        risk = kernel.excess_stats(rows, squares, tasks)
        self.steps += 1
        if self.steps <= self.n_warmup_steps:
            self.warmup_sum[tasks] += risk
        else:
            fresh = np.isnan(self.baseline[tasks])     # a task's first step after the warm-up sets its baseline
            start = self.warmup_sum[tasks] / self.n_warmup_steps if self.n_warmup_steps else risk
            self.baseline[np.asarray(tasks)[fresh]] = start[fresh]
            # scaled by the baseline, but for the step that took its baseline from itself (no warm-up)
            risk = np.where(fresh & (self.n_warmup_steps == 0), risk, risk / (self.baseline[tasks] + 1e-7))
            mass = self.weights[tasks].sum()
            if mass > 0:   # tasks the softmax drove to 0 stay there (a step of only those moves nothing)
                with np.errstate(divide="ignore"):
                    logits = np.log(self.weights[tasks] / mass) + risk * self.robust_step_size
                e = np.exp(logits - logits.max())
                self.weights[tasks] = mass * e / e.sum()
        weights = self.weights[tasks].copy()
        kernel.combine(rows, weights, out)
        return weights, None

    def state_dict(self):
        return {"squares": tensor_state(self.squares), "weights": self.weights.tolist(),
                "baseline": [None if np.isnan(v) else float(v) for v in self.baseline],
                "warmup_sum": self.warmup_sum.tolist(), "steps": self.steps}

    def load_state_dict(self, state):
        self.squares = state["squares"]
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.baseline = np.array([np.nan if v is None else v for v in state["baseline"]], dtype=np.float64)
        self.warmup_sum = np.asarray(state["warmup_sum"], dtype=np.float64)
        self.steps = int(state["steps"])
