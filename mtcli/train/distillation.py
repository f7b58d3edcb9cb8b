"""Multitask distillation's schedule: teacher annealing (BAM!, Clark et al., ACL 2019).

Each task's training target is a mix of the gold label and the teacher's prediction,

    target = lambda * gold + (1 - lambda) * teacher

with lambda, the gold label's weight, rising from 0 to 1 over the run (`linear`, BAM's schedule:
the student first imitates its teacher, then learns from the gold labels alone), or held at a
fixed value (`constant:0.5`). A row no gold label covers (an unlabeled file's, or a task's row
in a file several tasks share) takes the teacher's prediction alone. Torch-free: the
configuration checks it; the heads build the targets (mtcli.model.heads), the teachers
label the rows (mtcli.train.teacher).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtcli.core.errors import UserError, excerpt

ANNEALINGS = ("linear", "constant")


@dataclass(frozen=True)
class Annealing:
    kind: str                   # linear | constant
    value: float | None = None  # constant: the gold label's weight, in [0, 1]

    @classmethod
    def parse(cls, spec: str) -> "Annealing":
        """`linear` or `constant:LAMBDA` (LAMBDA in [0, 1]), or one UserError naming the flag."""
        kind, _, value = spec.partition(":")
        if kind == "linear" and not value:
            return cls("linear")
        if kind == "constant":
            try:
                weight = float(value)
            except ValueError:
                weight = math.nan
            if 0 <= weight <= 1:
                return cls("constant", weight)
        raise UserError(f"--teacher-annealing {excerpt(spec)}: expected linear (the gold label's weight rising from 0 "
                        f"to 1 over the run) or constant:LAMBDA with LAMBDA in [0, 1], e.g. constant:0.5")

    def gold_weight(self, step: int, total_steps: int) -> float:
        """The gold label's weight at 0-based optimizer `step` of `total_steps`."""
        if self.kind == "constant":
            return float(self.value)
        return min(1.0, step / max(1, total_steps))

    def describe(self) -> str:
        return "gold weight 0 -> 1 (linear)" if self.kind == "linear" else f"gold weight {self.value:g} (constant)"
