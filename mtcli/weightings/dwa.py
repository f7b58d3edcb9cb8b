"""Dynamic weight average (Liu, Johns & Davison 2019, DWA; TorchJD's `DWA`): each task's weight
follows the rate at which its loss fell over the last two epochs,

    r_k = Lbar_k(e-1) / Lbar_k(e-2),   w = T softmax(r / temperature),   f(L) = sum_k w_k L_k,

with Lbar_k(e) the mean of task k's losses over epoch e; equal weights for the first two
epochs. The running sums and the last two epoch means (per task of the run) are the state.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import LossWeighting


@dataclasses.dataclass
class DWA(LossWeighting):
    name = "dwa"
    temperature: Annotated[float, Field(gt=0)] = 2.0

    def __post_init__(self):
        self.sums = np.zeros(self.num_tasks)
        self.counts = np.zeros(self.num_tasks)
        self.means: list[list[float]] = []   # the last two epochs' mean losses per task

    def scalarize(self, losses, tasks):
        values = losses.detach().double().cpu().numpy()
        np.add.at(self.sums, tasks, values)
        np.add.at(self.counts, tasks, 1)
        return (losses.new_tensor(self._weights()[tasks]) * losses).sum()

    def _weights(self) -> np.ndarray:
        if len(self.means) < 2:
            return np.ones(self.num_tasks)
        older, newer = np.asarray(self.means[0]), np.asarray(self.means[1])
        rates = newer / older / self.temperature
        e = np.exp(rates - rates.max())
        return self.num_tasks * e / e.sum()

    def end_epoch(self):
        seen = self.counts > 0
        mean = np.where(seen, self.sums / np.maximum(self.counts, 1),
                        self.means[-1] if self.means else np.ones(self.num_tasks))  # unseen: the last mean
        self.means = [*self.means, mean.tolist()][-2:]
        self.sums, self.counts = np.zeros(self.num_tasks), np.zeros(self.num_tasks)

    def state_dict(self):
        return {"sums": self.sums.tolist(), "counts": self.counts.tolist(), "means": self.means}

    def load_state_dict(self, state):
        self.sums, self.counts = np.asarray(state["sums"], dtype=float), np.asarray(state["counts"], dtype=float)
        self.means = [list(map(float, m)) for m in state["means"]]
