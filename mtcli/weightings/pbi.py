"""Penalty-based boundary intersection (Zhang & Li 2007, MOEA/D's PBI; TorchJD's `PBI` with a
uniform preference): the distance d1 along the preference direction d plus theta times the
distance d2 from that line,

    d1 = L . d,   d2 = |L - d1 d|,   f(L) = d1 + theta d2,   d = (1, ..., 1) / sqrt(T)

(d2 with 1e-12 under the square root, so its gradient stays finite on the line itself).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import Field

from mtcli.weightings.base import LossWeighting


@dataclasses.dataclass
class PBI(LossWeighting):
    name = "pbi"
    theta: Annotated[float, Field(ge=0)] = 5.0

    def scalarize(self, losses, tasks):
        direction = losses.new_ones(len(tasks)) / len(tasks) ** 0.5
        d1 = losses @ direction
        off = losses - d1 * direction
        return d1 + self.theta * (off @ off + 1e-12).sqrt()
