"""One optimizer step, top to bottom.

    for each task of the step:   forward, loss, backward into the task's row of the buffer
    all-reduce                   (torchrun) the rows and the heads' gradients, one collective
    G = gram(rows)               pass 1 of the kernel
    w = weighting(G, tasks)      T x T host arithmetic: sum, weighted, PCGrad, MGDA, UPGrad, ...
    combine(rows, w) -> .grad    pass 2 of the kernel
    clip, AdamW, schedule

The shared encoder's gradient is the weighted combination; each head gets its own task's
gradient. Nothing here depends on which weighting runs. `Phase` is what the step updates:
it changes when head pretraining ends and the encoder unfreezes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from mtcli.core.errors import UserError
from mtcli.model.multitask import MultitaskModel
from mtcli.core.encoding import encode
from mtcli.train.config import TrainConfig
from mtcli.train.distributed import Distributed
from mtcli.train.gradients import TaskGradients
from mtcli.train.objectives import auxiliary_losses
from mtcli.train.units import Unit
from mtcli.weightings import Weighting, kernel
from mtcli.weightings.conflicts import conflict_stats


class NonFiniteError(UserError):
    """A loss or gradient became NaN/inf."""


@dataclass
class StepResult:
    losses: dict[str, torch.Tensor]       # per task (and task:auxiliary), detached
    examples: int                          # rows seen, all ranks together
    tasks: list[str]                       # the step's tasks, in buffer row order
    gram: np.ndarray | None = None         # None: no shared parameter trained (frozen encoder)
    weights: np.ndarray | None = None

    def gradient_record(self) -> dict:
        """What metrics.jsonl keeps of the step's gradients: pair cosines, conflicts, weights."""
        if self.gram is None:
            return {}
        stats = conflict_stats(self.gram)
        names = self.tasks
        return {"grad_cosine": {f"{names[i]}/{names[j]}": c for (i, j), c in stats["cosine"].items()},
                "conflict_fraction": stats["conflict_fraction"],
                "weights": dict(zip(names, (float(w) for w in self.weights)))}


def build_optimizer(model: MultitaskModel, config: TrainConfig, total_steps: int, phase: str):
    """AdamW over what trains in `phase`: the encoder at the phase's rate, the freshly
    initialised heads at the head rate; no weight decay on biases and norms; linear
    warmup then linear decay for every group."""
    groups = []
    for params, lr in ((model.encoder.named_parameters(), config.lr_of(phase)),
                       (model.heads.named_parameters(), config.head_lr_of(phase))):
        decay, no_decay = [], []
        for name, p in params:
            if p.requires_grad:
                (no_decay if p.dim() < 2 or "norm" in name else decay).append(p)
        groups += [{"params": decay, "weight_decay": config.weight_decay, "lr": lr},
                   {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]])
    warmup = int(config.warmup * total_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


@dataclass
class Phase:
    """What trains now: the phase's name, its optimizer and schedule, and the task-gradient
    buffer over the shared parameters that train (None while the encoder is frozen)."""
    name: str
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    grads: TaskGradients | None

    @classmethod
    def start(cls, name: str, model: MultitaskModel, config: TrainConfig, steps: int, num_tasks: int) -> "Phase":
        model.encoder.requires_grad_(name == "finetune")
        optimizer, scheduler = build_optimizer(model, config, steps, name)
        shared = model.shared_parameters()
        return cls(name, optimizer, scheduler, TaskGradients(shared, num_tasks) if shared else None)


class TrainStep:
    def __init__(self, model: MultitaskModel, tokenizer, config: TrainConfig, units: dict[str, Unit],
                 weighting: Weighting, dist: Distributed, device: torch.device):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.units, self.weighting, self.dist, self.device = units, weighting, dist, device
        self.task_index = {name: i for i, name in enumerate(model.tasks)}
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def __call__(self, phase: Phase, slots, step: int) -> StepResult:
        """Forward/backward every task of the step, combine, update. Raises NonFiniteError
        (with nothing applied) if a loss or the gradient is not finite."""
        by_unit: dict[str, list[np.ndarray]] = defaultdict(list)
        for slot in slots:
            by_unit[slot.task].append(slot.indices)
        tasks: list[str] = []  # the step's tasks, in the order of their rows in the gradient buffer

        def begin(task: str) -> None:
            """The next backward pass is `task`'s: into the next row of the buffer."""
            if phase.grads is not None:
                phase.grads.begin(len(tasks))
            tasks.append(task)

        self.model.train()
        try:
            losses, examples = {}, 0
            for unit, parts in by_unit.items():
                unit_losses, rows = self._backward(self.units[unit], np.concatenate(parts), step, phase.name, begin)
                losses.update(unit_losses)
                examples += rows * self.dist.world
            result = StepResult(losses, examples, tasks)
            heads = [p.grad for p in self.model.heads.parameters() if p.grad is not None]
            rows = [phase.grads.used_rows()] if phase.grads is not None else []
            self.dist.average_(rows + heads)  # one collective: every rank holds the same gradients
            if phase.grads is not None:
                result.gram = kernel.gram(phase.grads.used_rows())
                result.weights = self.weighting(result.gram, [self.task_index[t] for t in tasks])
                phase.grads.combine(result.weights)
            limit = self.config.clip if self.config.clip > 0 else math.inf
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit)
            if not torch.isfinite(norm):
                raise NonFiniteError(f"step {step + 1}: the gradient norm is {norm.item()} (tasks {', '.join(tasks)})")
            phase.optimizer.step()
        finally:
            phase.optimizer.zero_grad(set_to_none=True)
            if phase.grads is not None:
                phase.grads.reset()
        phase.scheduler.step()
        return result

    def _backward(self, unit: Unit, indices: np.ndarray, step: int, phase: str, begin) -> tuple[dict, int]:
        """One unit's batch (this rank's share): the encoder once, then for each of its tasks the
        loss on the rows that label it, backward into that task's buffer row. Its losses and row
        count."""
        rows = self.dist.shard(indices)
        texts = [unit.texts[i] for i in rows]
        inputs = {k: torch.from_numpy(v).to(self.device, non_blocking=True)
                  for k, v in encode(self.tokenizer, unit.encoding, texts).items()}
        # the tasks the whole batch labels (every rank the same, whatever its share holds)
        present = [t for t in unit.tasks if any(unit.labels[t][i] is not None for i in indices)]
        with self.autocast:
            embedded = self.model.encode(unit.encoding, inputs)
        losses = {}
        for k, task in enumerate(present):
            begin(task)
            labeled = unit.labeled(task, rows)
            total = None
            if labeled:
                labels = [unit.labels[task][rows[j]] for j in labeled]
                with self.autocast:
                    output = self.model.head(task).from_embedding(embedded, None if len(labeled) == len(rows) else labeled)
                    loss = self.model.loss(task, output, self.model.label_tensor(task, labels, self.device))
                    extra = auxiliary_losses(self.config, self.model, self.tokenizer, task,
                                             [texts[j] for j in labeled], labels, self.device) \
                        if phase == "finetune" else {}
                total = loss + sum(extra.values())
                losses.update({task: loss.detach(), **{f"{task}:{name}": v.detach() for name, v in extra.items()}})
            if not self.dist.all_true(total is None or bool(torch.isfinite(total)), self.device):
                bad = next((f" {n}" for n, v in [("", loss), *extra.items()] if not torch.isfinite(v)), "") \
                    if total is not None else ""
                raise NonFiniteError(f"step {step + 1}: {task}{bad.rstrip()} loss is "
                                     f"{total.item() if total is not None else 'not finite on another rank'}")
            if total is not None and total.requires_grad:  # not when nothing trains: a cosine head, frozen encoder
                total.backward(retain_graph=k < len(present) - 1)  # later tasks go back through the same encoding
        return losses, len(rows)
