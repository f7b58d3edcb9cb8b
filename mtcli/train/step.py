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
from mtcli.model.predict import torch_inputs
from mtcli.train.config import TrainConfig
from mtcli.train.distributed import Distributed
from mtcli.train.gradients import TaskGradients
from mtcli.train.objectives import auxiliary_losses
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
    def __init__(self, model: MultitaskModel, tokenizer, config: TrainConfig, train_splits: dict,
                 weighting: Weighting, dist: Distributed, device: torch.device):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.train_splits, self.weighting, self.dist, self.device = train_splits, weighting, dist, device
        self.task_index = {name: i for i, name in enumerate(model.tasks)}
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def __call__(self, phase: Phase, slots, step: int) -> StepResult:
        """Forward/backward every task of the step, combine, update. Raises NonFiniteError
        (with nothing applied) if a loss or the gradient is not finite."""
        by_task: dict[str, list[np.ndarray]] = defaultdict(list)
        for slot in slots:
            by_task[slot.task].append(slot.indices)
        tasks = list(by_task)
        self.model.train()
        try:
            losses, examples = {}, 0
            for row, task in enumerate(tasks):
                if phase.grads is not None:
                    phase.grads.begin(row)
                task_losses, rows = self._backward(task, np.concatenate(by_task[task]), step, phase.name)
                losses.update(task_losses)
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

    def _backward(self, task: str, indices: np.ndarray, step: int, phase: str) -> tuple[dict, int]:
        """Forward and backward of one task's batch (this rank's share); its losses and row count."""
        examples = [self.train_splits[task].examples[i] for i in self.dist.shard(indices)]
        texts, labels = [ex.texts for ex in examples], [ex.label for ex in examples]
        inputs = torch_inputs(self.tokenizer, self.model, task, texts, self.device)
        with self.autocast:
            loss = self.model.loss(task, self.model(task, inputs), self.model.label_tensor(task, labels, self.device))
            extra = auxiliary_losses(self.config, self.model, self.tokenizer, task, texts, labels, self.device) \
                if phase == "finetune" else {}
        total = loss + sum(extra.values())
        if not self.dist.all_true(bool(torch.isfinite(total)), self.device):
            bad = next((f" {n}" for n, v in [("", loss), *extra.items()] if not torch.isfinite(v)), "")
            raise NonFiniteError(f"step {step + 1}: {task}{bad.rstrip()} loss is {total.item()}")
        if total.requires_grad:  # not when nothing trains for the task: a cosine head on a frozen encoder
            total.backward()
        losses = {task: loss.detach(), **{f"{task}:{name}": value.detach() for name, value in extra.items()}}
        return losses, len(examples)
