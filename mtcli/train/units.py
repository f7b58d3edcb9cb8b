"""Training units: what the sampler draws batches of. A task alone, or the tasks that share a
training file, its text columns and an encoding (SICK's relatedness and entailment, declared
on one file): their rows are drawn together, the encoder runs once per batch, and each task's
loss comes from the rows that carry its label (partial labels: a row may label some of the
tasks only). Each task's gradient stays its own row for the weightings.

Torch-free: rows, labels and the grouping; the step (step.py) does the encoding.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from mtcli.core.data import Example, Split
from mtcli.core.encoding import Encoding, encoding_for
from mtcli.core.errors import UserError
from mtcli.core.tasks import Task


@dataclass
class Unit:
    name: str                            # the task's name, or the tasks' names joined by '+'
    tasks: tuple[str, ...]
    encoding: Encoding
    texts: list[tuple[str, ...]]         # one per row
    labels: dict[str, list]              # per task: every row's label, None where the row has none
    teacher: dict[str, np.ndarray] = field(default_factory=dict)   # per taught task: every row's teacher prediction
    teacher_embeddings: dict[str, np.ndarray] = field(default_factory=dict)   # and its embedding of every text

    def __len__(self) -> int:
        return len(self.texts)

    def labeled(self, task: str, rows) -> list[int]:
        """Positions (in `rows`) of the rows that train `task`: those with its label, or every row
        where a teacher labelled them all (distillation)."""
        if task in self.teacher:
            return list(range(len(rows)))
        labels = self.labels[task]
        return [j for j, i in enumerate(rows) if labels[i] is not None]

    def trains(self, task: str, rows) -> bool:
        """Whether any of `rows` trains `task`."""
        return task in self.teacher or any(self.labels[task][i] is not None for i in rows)


def _key(task: Task, split: Split) -> tuple:
    """Tasks with equal keys share rows and a forward pass: one file, the same texts, one encoding."""
    return str(split.path), task.text, encoding_for(task)


def make_units(tasks: dict[str, Task], splits: dict[str, Split],
               unlabeled: dict[str, list[Example]] | None = None) -> dict[str, Unit]:
    """The run's units, in the tasks' declaration order: a task alone, or with the tasks it shares
    its training file, text columns and encoding with (rows merged by their line in the file).
    `unlabeled`: per task, rows of text without labels (distillation: a teacher labels them),
    appended to the task's unit, each distinct row once."""
    groups: dict[tuple, list[str]] = {}
    for name, task in tasks.items():
        groups.setdefault(_key(task, splits[name]), []).append(name)
    units = {}
    for members in groups.values():
        if len(members) == 1:
            split = splits[members[0]]
            unit = Unit(members[0], (members[0],), encoding_for(tasks[members[0]]),
                        [ex.texts for ex in split.examples], {members[0]: split.labels})
        else:
            rows: dict[int, tuple[str, ...]] = {}
            labels: dict[str, dict[int, object]] = {name: {} for name in members}
            for name in members:
                for ex in splits[name].examples:
                    rows.setdefault(ex.line, ex.texts)
                    labels[name][ex.line] = ex.label
            lines = sorted(rows)
            unit = Unit("+".join(members), tuple(members), encoding_for(tasks[members[0]]), [rows[l] for l in lines],
                        {name: [labels[name].get(l) for l in lines] for name in members})
        extra = [ex.texts for name in unit.tasks for ex in (unlabeled or {}).get(name, [])]
        if extra:
            extra = list(dict.fromkeys(extra))
            unit.texts = unit.texts + extra
            unit.labels = {name: labels + [None] * len(extra) for name, labels in unit.labels.items()}
        units[unit.name] = unit
    return units


def subsample(unit: Unit, fraction: float, seed: int) -> Unit:
    """A seeded random `fraction` of a unit's rows, in file order: tasks keep their relative sizes
    (unlike --limit), which is what sampler comparisons need. A task alone draws the rows it
    drew when units were tasks."""
    if fraction >= 1.0:
        return unit
    keep = max(1, round(fraction * len(unit)))
    rng = np.random.default_rng([seed, zlib.crc32(unit.name.encode())])  # its own stream per unit
    rows = np.sort(rng.permutation(len(unit))[:keep])
    return Unit(unit.name, unit.tasks, unit.encoding, [unit.texts[i] for i in rows],
                {t: [labels[i] for i in rows] for t, labels in unit.labels.items()})


def unit_factors(units: dict[str, Unit], upsample: dict[str, int]) -> dict[str, int]:
    """--upsample given per task, as each unit's factor (the tasks of a unit must agree)."""
    factors = {}
    for name, unit in units.items():
        given = {upsample.get(t, 1) for t in unit.tasks}
        if len(given) > 1:
            raise UserError(f"--upsample: {', '.join(unit.tasks)} share their rows (one file, one encoding) and are "
                            f"drawn together: give them one factor")
        factors[name] = given.pop()
    return factors
