"""Weightings that ignore the Gram matrix: the plain sum, and fixed per-task weights.

    sum:       g = sum_k g_k
    weighted:  g = sum_k c_k g_k   (c: --task-weights; tasks not named weigh 1)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtcli.weightings.base import Weighting


@dataclasses.dataclass
class Sum(Weighting):
    name = "sum"
    reads_gram = False

    def weights(self, gram, tasks):
        return np.ones(len(tasks))


@dataclasses.dataclass
class Weighted(Weighting):
    name = "weighted"
    reads_gram = False
    task_weights: tuple[float, ...] | None = None   # one per task of the run

    def weights(self, gram, tasks):
        if self.task_weights is None:
            raise ValueError("weighted needs task_weights: one weight per task of the run")
        if len(self.task_weights) != self.num_tasks:
            raise ValueError(f"weighted has {len(self.task_weights)} task weights for {self.num_tasks} tasks")
        return np.asarray([self.task_weights[t] for t in tasks], dtype=np.float64)
