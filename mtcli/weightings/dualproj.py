"""DualProj (the projection of GEM, Lopez-Paz & Ranzato 2017, Equation 11): average the task
gradients, then project the average onto the dual cone of all of them:

    g = pi_J((1/T) sum_k g_k) = J^T v,   v = argmin_{v >= 1/T} v^T G v
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtcli.weightings.dual_cone import DualConeWeighting, project


@dataclasses.dataclass
class DualProj(DualConeWeighting):
    name = "dualproj"

    def weights(self, gram, tasks):
        return project(np.full(len(gram), 1.0 / len(gram)), self.conditioned(gram))
