"""Trimmed mean (Yin et al. 2018, coordinate-wise; TorchJD's `TrimmedMean`): per coordinate,
the mean of the task gradients less the `trim` largest and the `trim` smallest values. A step
with fewer than 2 trim + 1 tasks trims what it can, (T - 1) // 2 per side. One fused kernel
pass; the logged weights are 1 / (T - 2 trim), the share of each kept value.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from pydantic import Field

from mtcli.weightings.base import MAX_ITERATIONS, RowsWeighting


@dataclasses.dataclass
class TrimmedMean(RowsWeighting):
    name = "trimmed-mean"
    trim: Annotated[int, Field(ge=0, le=MAX_ITERATIONS)] = 1

    def combine_rows(self, rows, out, tasks, gram, losses):
        from mtcli.weightings import kernel

        trim = min(self.trim, (len(tasks) - 1) // 2)
        kernel.trimmed_mean(rows, trim, out)
        return np.full(len(tasks), 1.0 / (len(tasks) - 2 * trim)), None
