"""UPGrad (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization"): project
each task gradient onto the dual cone of all of them, then average:

    g = (1/T) sum_i pi_J(g_i),   pi_J(J^T e_i) = J^T v_i,   v_i = argmin_{v >= e_i} v^T G v

so w = (1/T) sum_i v_i. Every task's loss decreases along g to first order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtcli.weightings import dual_cone
from mtcli.weightings.base import Weighting


@dataclasses.dataclass
class UPGrad(Weighting):
    name = "upgrad"
    norm_eps: float = dual_cone.NORM_EPS
    reg_eps: float = dual_cone.REG_EPS

    def weights(self, gram, tasks):
        num = len(gram)
        conditioned = dual_cone.conditioned(gram, self.norm_eps, self.reg_eps)
        return sum(dual_cone.project(np.eye(num)[i] / num, conditioned) for i in range(num))
