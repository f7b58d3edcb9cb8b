"""What a multitask method is, by what it reads of a training step (its `family`):

  losses   the tasks' loss values: a differentiable scalarization f(L_1..L_T) (UW, DWA, FAMO,
           ...). The step backpropagates once, the weighted sum sum_k (df/dL_k) L_k: no per-task
           gradients, no (T, n) buffer. LossWeighting.
  gram     the T x T Gram matrix G = g g^T of the task gradients: weights w from G, combined
           g = sum_k w_k g_k by the kernel's two passes (Gram, combine) over the (T, n) buffer,
           with host arithmetic on T x T numbers in between. Weighting.
  rows     the task gradients themselves, coordinate by coordinate (GradDrop, TrimmedMean):
           fused passes of the kernel over the (T, n) buffer. RowsWeighting.

A gram method may ask for more than one gradient sample of each task per step (`draws`, MoDo's
two): the step then splits each task's batch into that many parts, backpropagates each into its
own row (task t's draw d in row t * draws + d) and passes their Gram matrix; the method's T
weights spread evenly over a task's draws in the combination.

The step asks a method its family and does only that work. A step may carry only some of the
run's tasks (the samplers need not put every task in every step), so a method is called with
the run-wide indices of the tasks it weighs; stateful methods keep their state per task of the
run and read the step's part of it. Parameters are dataclass fields with the published
defaults and declared bounds (`param`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import ClassVar, Sequence

import numpy as np

from mtcli.core.errors import UserError
from mtcli.core.typed import bounds_problem, has_type, type_name
from mtcli.core.specs import parse_spec  # noqa: F401  (re-exported: weightings parse specs here)


# What each family reads of a step (what `mtcli info` says of it)
FAMILIES = {
    "gram": "the Gram matrix of the task gradients",
    "losses": "the task losses",
    "rows": "the task gradients coordinate by coordinate, or state the size of the gradients",
}


@dataclasses.dataclass
class Method:
    """Every method: a dataclass whose fields are its parameters (published defaults); `num_tasks`
    is the number of tasks in the run. State that --resume must restore is `state_dict`."""

    name: ClassVar[str]
    family: ClassVar[str]                  # what it reads of a step: losses, gram or rows
    reads_gram: ClassVar[bool] = True      # False: weights that depend on nothing of the step (sum)
    reads_losses: ClassVar[bool] = False   # gram and rows methods that also read the step's task losses
    draws: ClassVar[int] = 1               # gradient samples of each task per step (gram family: MoDo's 2)
    num_tasks: int = dataclasses.field(default=1, kw_only=True)

    def end_epoch(self) -> None:
        """Called after every epoch (DWA's loss averages move on)."""

    def row_weights(self, weights: np.ndarray) -> np.ndarray:
        """The combination's weight of each row from the tasks' weights: a task's weight spread
        evenly over its draws (rows t * draws .. t * draws + draws - 1)."""
        return np.repeat(np.asarray(weights, dtype=np.float64) / self.draws, self.draws)

    def tensors(self) -> list:
        """Learnable tensors (requires_grad) that train with the model, in the heads' optimizer
        group (UW's log-variances); none by default."""
        return []

    def loss_scales(self) -> np.ndarray | None:
        """Factors (one per task of the run) on the task losses before their backward, so that the
        rows are gradients of the scaled losses (GradNorm's w_k L_k, IMTL's e^(s_k) L_k); None: 1."""
        return None

    # State: what must survive a checkpoint for --resume to continue bit-identically.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got {sorted(state)}")

    @property
    def spec(self) -> str:
        """The method as `--combine` spells it, with every parameter."""
        params = [f"{f.name.rstrip('_')}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                  if f.init and f.name not in ("num_tasks", "task_weights", "seed")]
        return self.name + (":" + ",".join(params) if params else "")


@dataclasses.dataclass
class LossWeighting(Method):
    """A method of the losses family: `scalarize` maps the step's task losses (a tensor of the
    tasks' values, every rank the same) to one differentiable scalar; the step then
    backpropagates once sum_k (df/dL_k) L_k. Its learnable tensors (UW's log-variances) train
    with the model (`tensors`, in the heads' optimizer group)."""

    family = "losses"
    needs_losses_after: ClassVar[bool] = False   # FAMO: the losses on the step's batches after its update

    def scalarize(self, losses, tasks: list[int]):
        raise NotImplementedError

    def after_step(self, losses, tasks: list[int]) -> None:
        """The losses of the step's batches after its update (only if needs_losses_after)."""


@dataclasses.dataclass
class Weighting(Method):
    """A method of the gram family: the T x T Gram matrix of the step's task gradients to T weights."""

    family = "gram"

    def __call__(self, gram: np.ndarray, tasks: Sequence[int] | None = None, losses=None) -> np.ndarray:
        """Weights (T,) float64 for the T tasks whose rows' Gram matrix is `gram` (T * draws square:
        task t's draw d in row t * draws + d); `tasks` are the tasks' indices among the run's
        (default: 0..T-1); `losses` their losses (every rank the same values), for the methods
        that read them."""
        gram = np.asarray(gram, dtype=np.float64)
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or len(gram) % self.draws:
            raise ValueError(f"expected a square Gram matrix of {self.draws} rows per task, got shape {gram.shape}")
        count = len(gram) // self.draws
        tasks = list(range(count)) if tasks is None else [int(t) for t in tasks]
        if len(tasks) != count or any(not 0 <= t < self.num_tasks for t in tasks):
            raise ValueError(f"tasks {tasks} do not index {count} tasks among {self.num_tasks}")
        if self.reads_losses:
            if losses is None or len(losses) != count:
                raise ValueError(f"{self.name} weighs the task gradients with their losses: pass one loss per row")
            return np.asarray(self.weights(gram, tasks, np.asarray(losses, dtype=np.float64)), dtype=np.float64)
        return np.asarray(self.weights(gram, tasks), dtype=np.float64)

    def weights(self, gram: np.ndarray, tasks: list[int]) -> np.ndarray:
        raise NotImplementedError


@dataclasses.dataclass
class RowsWeighting(Method):
    """A method of the rows family: the step's task gradients themselves, through fused kernel
    passes (mtcli.weightings.kernel: graddrop, trimmed_mean, ema_rows, excess_stats), with state
    the size of the gradients where the method tracks them (float32, one row per task of the
    run, allocated at the first step on the gradients' device)."""

    family = "rows"

    def combine_rows(self, rows, out, tasks: list[int], gram: np.ndarray, losses: np.ndarray | None):
        """Write the shared gradient for the (T, n) `rows` (the step's tasks `tasks` among the
        run's; `gram` their Gram matrix, `losses` their losses if the method reads them) into
        `out` (n,). Returns (weights, head_factors): what the run logs as each task's weight,
        and factors on each task head's gradient (None: as it is)."""
        raise NotImplementedError

    def _state_rows(self, name: str, rows):
        """The method's (tasks of the run, n) float32 state buffer `name`, made at first use."""
        import torch

        buffer = getattr(self, name, None)
        if buffer is None or tuple(buffer.shape) != (self.num_tasks, rows.shape[1]):
            buffer = torch.zeros(self.num_tasks, rows.shape[1], dtype=torch.float32, device=rows.device)
        elif buffer.device != rows.device or not buffer.is_contiguous():   # restored from a checkpoint
            buffer = buffer.to(rows.device, torch.float32).contiguous()
        setattr(self, name, buffer)
        return buffer


def gather_rows(state, tasks: list[int]):
    """The state rows of `tasks`, contiguous: a view when they are the run's tasks in order."""
    if list(tasks) == list(range(len(tasks))):
        return state[: len(tasks)]
    import torch

    return state.index_select(0, torch.as_tensor(tasks, device=state.device))


def tensor_state(tensor) -> object:
    """A state buffer as checkpoint data (a CPU tensor; None before the first step)."""
    return None if tensor is None else tensor.detach().cpu().clone()


class RandomOrder:
    """A seeded permutation source whose position is state (PCGrad's and GradVac's shuffles)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def permutation(self, k: int) -> list[int]:
        return [int(i) for i in self.rng.permutation(k)]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


MAX_ITERATIONS = 1_000_000   # the upper bound of every iteration-count parameter

# Fields a spec may not set: they come from the run (--task-weights, --seed)
FROM_THE_RUN = {"task_weights": "--task-weights", "seed": "--seed"}


def parameters(cls: type[Weighting]) -> dict[str, dataclasses.Field]:
    """The parameters a user may set on `cls` (its dataclass fields but the task count)."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in ("num_tasks",)}


def spec_parameters(cls: type[Weighting]) -> dict[str, dataclasses.Field]:
    """The parameters a `--combine` spec may set (not the ones the run supplies)."""
    return {name: f for name, f in parameters(cls).items() if name not in FROM_THE_RUN}


def cast_params(cls: type[Weighting], params: dict, spec: str, *, from_spec: bool = True) -> dict:
    """Parameter strings (from the command line) or values (from Python) as the fields' types,
    each checked against its bounds. `from_spec`: the values came from a `--combine` spec,
    which may not set what the run supplies (task weights, the seed)."""
    known = spec_parameters(cls) if from_spec else parameters(cls)
    out = {}
    for key, value in params.items():
        if key not in known and f"{key}_" in known:  # a Python keyword, spelled plainly: cosmos:lambda=2
            key = f"{key}_"
        if key in FROM_THE_RUN and from_spec:
            raise UserError(f"--combine {spec!r}: {key} is not set in the spec; it comes from {FROM_THE_RUN[key]}")
        if key not in known:
            options = ", ".join(spec_parameters(cls)) or "none"
            raise UserError(f"--combine {spec!r}: {cls.name} has no parameter {key!r} (parameters: {options})")
        kind = typing.get_type_hints(cls)[key]
        if isinstance(value, str) and kind in (int, float):   # from the command line
            try:
                number = float(value)
                value = kind(number) if kind is float or number == int(number) else None
                if value is None:
                    raise ValueError
            except (ValueError, OverflowError):
                raise UserError(f"--combine {spec!r}: {key} must be {type_name(kind)}") from None
        if not has_type(value, kind):
            raise UserError(f"--combine {spec!r}: {key}={value} must be {type_name(kind)}")
        problem = bounds_problem(value, typing.get_type_hints(cls, include_extras=True)[key])   # core/typed.py
        if problem:
            raise UserError(f"--combine {spec!r}: {key}={value} {problem}")
        out[key] = value
    return out
