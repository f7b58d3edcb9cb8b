"""DualProj (the projection of GEM, Lopez-Paz & Ranzato 2017, Equation 11): average the task
gradients, then project the average onto the dual cone of all of them:

    g = pi_J((1/T) sum_k g_k) = J^T v,   v = argmin_{v >= 1/T} v^T G v
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtcli.weightings import dual_cone
from mtcli.weightings.base import Weighting


@dataclasses.dataclass
class DualProj(Weighting):
    name = "dualproj"
    norm_eps: float = dual_cone.NORM_EPS
    reg_eps: float = dual_cone.REG_EPS

    def weights(self, gram, tasks):
        num = len(gram)
        return dual_cone.project(np.full(num, 1.0 / num), dual_cone.conditioned(gram, self.norm_eps, self.reg_eps))
