"""GradDrop (Chen et al. 2020, "Just Pick a Sign", Algorithm 1 lines 10-15; TorchJD's
`GradDrop`): per coordinate, the sign purity P = (1 + sum_t g_t / sum_t |g_t|) / 2 against a
uniform draw U; each task's gradient passes where it has the sign the draw picked (positive
where P > U, negative where P < U), and a leak lets a fraction through regardless:

    out = sum_t (leak + (1 - leak) M_t) g_t.

One fused kernel pass. The draws come from a counter hash of (--seed, step), so they are the
same on every rank and device and a resumed run draws what the straight one drew; the step
counter is the state. The logged weights are 1 (a mask per coordinate, no weight per task).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import RowsWeighting


@dataclasses.dataclass
class GradDrop(RowsWeighting):
    name = "graddrop"
    leak: Annotated[float, Field(ge=0, le=1)] = 0.0
    seed: int = 0

    def __post_init__(self):
        self.counter = 0

    def combine_rows(self, rows, out, tasks, gram, losses):
        from mtcli.weightings import kernel

        kernel.graddrop(rows, np.full(len(tasks), self.leak), self.seed, self.counter, out)
        self.counter += 1
        return np.ones(len(tasks)), None

    def state_dict(self):
        return {"counter": self.counter}

    def load_state_dict(self, state):
        self.counter = int(state["counter"])
