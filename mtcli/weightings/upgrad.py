"""UPGrad (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization"): project
each task gradient onto the dual cone of all of them, then average:

    g = (1/T) sum_i pi_J(g_i),   pi_J(J^T e_i) = J^T v_i,   v_i = argmin_{v >= e_i} v^T G v

so w = (1/T) sum_i v_i. Every task's loss decreases along g to first order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtcli.weightings.dual_cone import DualConeWeighting, project


@dataclasses.dataclass
class UPGrad(DualConeWeighting):
    name = "upgrad"

    def weights(self, gram, tasks):
        num, conditioned = len(gram), self.conditioned(gram)
        return sum(project(np.eye(num)[i] / num, conditioned) for i in range(num))
