"""One optimizer step, top to bottom. What the step computes follows the method's family
(mtcli.weightings.base), never its name:

    for each unit of the step:   forward (the encoder once per batch), each task's loss (against its
                                 gold labels, or mixed with a teacher's predictions: distillation.py)
      gram, rows families:       each task's loss (times the method's factor, if it scales the
                                 losses: GradNorm, IMTL) backward into its row of the (T, n) buffer
                                 (a method that takes `draws` samples of each task, MoDo: the
                                 task's batch in that many parts, each backward into its own row)
    losses family:               f = method(losses), every rank the same values; one backward
                                 of the weighted sum sum_k (df/dL_k) L_k: no buffer at all
    all-reduce                   (torchrun) the gradients, one collective
    gram family:                 G = gram(rows) (kernel pass 1), w = method(G [, losses]), combine (pass 2)
                                 (a task's weight spread over its draws' rows)
    rows family:                 G = gram(rows), then the method's own fused passes over the rows
                                 (and its state) write the encoder's .grad
    clip, AdamW, schedule
    losses family, if it asks:   the step's losses again after the update (FAMO)

Under the gram and rows families the shared encoder's gradient is the method's combination
and each head gets its own task's gradient; under the losses family every part of the model
gets the scalarization's gradient (the heads' losses are weighted too). `Phase` is what the
step updates: it changes when head pretraining ends and the encoder unfreezes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from mtcli.core.encoding import encode
from mtcli.core.errors import UserError
from mtcli.model.multitask import MultitaskModel
from mtcli.train.config import TrainConfig
from mtcli.train.distillation import Annealing
from mtcli.train.distributed import Distributed
from mtcli.train.gradients import TaskGradients
from mtcli.train.objectives import EmbeddingDistillation, auxiliary_losses
from mtcli.train.units import Unit
from mtcli.weightings import kernel
from mtcli.weightings.base import Method
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
        """What metrics.jsonl keeps of the step's gradients: pair cosines and conflicts (where the
        task gradients were computed), each task's weight (every family)."""
        record = {}
        if self.gram is not None:
            stats = conflict_stats(self.gram)
            names = self.tasks
            record.update(grad_cosine={f"{names[i]}/{names[j]}": c for (i, j), c in stats["cosine"].items()},
                          conflict_fraction=stats["conflict_fraction"])
        if self.weights is not None:
            record["weights"] = dict(zip(self.tasks, (float(w) for w in self.weights)))
        return record


def build_optimizer(model: MultitaskModel, config: TrainConfig, total_steps: int, phase: str, extra=()):
    """AdamW over what trains in `phase`: the encoder at the phase's rate, the freshly
    initialised heads at the head rate; no weight decay on biases and norms; linear
    warmup then linear decay for every group. `extra`: a method's learnable tensors (UW's
    log-variances), at the head rate, without decay."""
    groups = []
    for params, lr in ((model.encoder.named_parameters(), config.lr_of(phase)),
                       (model.heads.named_parameters(), config.head_lr_of(phase))):
        decay, no_decay = [], []
        for name, p in params:
            if p.requires_grad:
                (no_decay if p.dim() < 2 or "norm" in name else decay).append(p)
        groups += [{"params": decay, "weight_decay": config.weight_decay, "lr": lr},
                   {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
    groups.append({"params": list(extra), "weight_decay": 0.0, "lr": config.head_lr_of(phase)})
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
    def start(cls, name: str, model: MultitaskModel, config: TrainConfig, steps: int, method: Method,
              more=()) -> "Phase":
        """The phase's optimizer and schedule; the (T, n) buffer only for methods that read the task
        gradients (the losses family never allocates it). `more`: what else trains at the heads'
        rate (the embedding distillation's projections)."""
        model.encoder.requires_grad_(name == "finetune")
        optimizer, scheduler = build_optimizer(model, config, steps, name, extra=[*method.tensors(), *more])
        shared = model.shared_parameters()
        per_task = shared and method.family != "losses"
        rows = method.num_tasks * method.draws
        return cls(name, optimizer, scheduler, TaskGradients(shared, rows) if per_task else None)


class TrainStep:
    def __init__(self, model: MultitaskModel, tokenizer, config: TrainConfig, units: dict[str, Unit],
                 method: Method, dist: Distributed, device: torch.device, total_steps: int,
                 distiller: EmbeddingDistillation | None = None):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.units, self.method, self.dist, self.device = units, method, dist, device
        self.annealing, self.total_steps = Annealing.parse(config.teacher_annealing), total_steps
        self.distiller = distiller   # --distill-embeddings: the projections to the teachers' widths
        self.task_index = {name: i for i, name in enumerate(model.tasks)}
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def __call__(self, phase: Phase, slots, step: int) -> StepResult:
        """Forward/backward every task of the step, combine, update. Raises NonFiniteError
        (with nothing applied) if a loss or the gradient is not finite."""
        by_unit: dict[str, list[np.ndarray]] = defaultdict(list)
        for slot in slots:
            by_unit[slot.task].append(slot.indices)
        batches = {unit: np.concatenate(parts) for unit, parts in by_unit.items()}
        method, losses_family = self.method, self.method.family == "losses"
        scales = None if losses_family else method.loss_scales()   # GradNorm's w, IMTL's e^s: rows of scaled losses
        tasks: list[str] = []       # the step's tasks, in the order of their rows in the gradient buffer
        totals: list[torch.Tensor] = []   # each task's loss (its graph kept for the losses family)

        self.model.train()
        try:
            losses, examples = {}, 0
            for unit, indices in batches.items():   # a unit: forward once, then each task's backward into its rows
                unit_losses, rows, task_parts = self._forward(self.units[unit], indices, step, phase.name)
                losses.update(unit_losses)
                examples += rows * self.dist.world
                for k, (task, parts) in enumerate(task_parts):
                    tasks.append(task)
                    total = None if parts is None else parts[0][0] if len(parts) == 1 else sum(t * f for t, f in parts)
                    totals.append(total if losses_family or total is None else total.detach())
                    if not losses_family:
                        factor = 1.0 if scales is None else float(scales[self.task_index[task]])
                        self._backward_rows(phase, parts, (len(tasks) - 1) * method.draws, factor,
                                            last=k == len(task_parts) - 1)
            result = StepResult(losses, examples, tasks)
            heads = self._grads([p for t in dict.fromkeys(tasks) for p in self.model.head(t).parameters()]
                                + list(self._own_parameters()))
            if losses_family:
                result.weights = self._scalarized_backward(totals, tasks)
                self.dist.average_(self._grads(self.model.shared_parameters()) + heads)
            else:
                rows = [phase.grads.used_rows()] if phase.grads is not None else []
                self.dist.average_(rows + heads)  # one collective: every rank holds the same gradients
                if phase.grads is not None:
                    index = [self.task_index[t] for t in tasks]
                    gram = kernel.gram(phase.grads.used_rows())
                    result.gram = fold_draws(gram, method.draws)   # the tasks' whole-batch gradients
                    losses_now = self._loss_values(totals) if method.reads_losses else None
                    if method.family == "rows":   # the method's own fused passes write the shared gradient
                        weights, head_factors = phase.grads.combine_rows(method, index, gram, losses_now)
                        self._scale_heads(tasks, head_factors)
                    else:
                        weights = method(gram, index, losses_now)
                        phase.grads.combine(method.row_weights(weights))
                    # what each task's raw gradient got (the scaled methods' factors included)
                    result.weights = weights if scales is None else weights * scales[index]
            limit = self.config.clip if self.config.clip > 0 else math.inf
            norm = torch.nn.utils.clip_grad_norm_([*self.model.parameters(), *self._own_parameters()], limit)
            if not torch.isfinite(norm):
                raise NonFiniteError(f"step {step + 1}: the gradient norm is {norm.item()} (tasks {', '.join(tasks)})")
            phase.optimizer.step()
        finally:
            phase.optimizer.zero_grad(set_to_none=True)
            if phase.grads is not None:
                phase.grads.reset()
        phase.scheduler.step()
        if losses_family and method.needs_losses_after:  # FAMO: the same batches' losses after the update
            with torch.no_grad():
                after = [parts[0][0] for unit, indices in batches.items()
                         for _, parts in self._forward(self.units[unit], indices, step, phase.name)[2]]
            method.after_step(self._everywhere(torch.stack(after)), [self.task_index[t] for t in tasks])
        return result

    def _own_parameters(self):
        """What trains beside the model: the embedding distillation's projections."""
        return self.distiller.parameters() if self.distiller is not None else ()

    def _embedding_loss(self, unit: Unit, task: str, embedded, rows, subset: list[int], texts) -> dict:
        """--distill-embeddings: the student's embedding of each text of the rows against the teacher's."""
        if self.distiller is None or task not in unit.teacher_embeddings:
            return {}
        teacher = torch.from_numpy(unit.teacher_embeddings[task][[rows[j] for j in subset]]).to(self.device)
        student = self.distiller.embeddings_of(self.model, self.tokenizer, unit.encoding, embedded, subset, texts,
                                               self.device)
        return {"embed": self.config.distill_embeddings * self.distiller(student, teacher)}

    def _target(self, unit: Unit, task: str, rows: list[int], step: int) -> torch.Tensor:
        """What the task's loss takes for `rows` of the unit: the gold labels, or under distillation
        the gold labels and the teacher's predictions mixed at this step's gold weight."""
        gold = [unit.labels[task][i] for i in rows]
        if task not in unit.teacher:
            return self.model.label_tensor(task, gold, self.device)
        weight = self.annealing.gold_weight(step, self.total_steps)
        return self.model.head(task).target(gold, unit.teacher[task][rows], weight, self.config.teacher_temperature,
                                            self.device)

    def _backward_rows(self, phase: Phase, parts, first_row: int, factor: float, last: bool) -> None:
        """One task's loss, in `method.draws` parts of its rows (loss, share of the rows), or None
        where this rank's share labels none of them: each part backward into a buffer row of its
        own (times the method's factor, scaled back from its share). Every part but the unit's
        last keeps the graph: later tasks (and draws) of the unit go back through its encoding."""
        for draw, (part, share) in enumerate(parts or [(None, 1.0)] * self.method.draws):
            row = first_row + draw
            if phase.grads is not None:
                phase.grads.begin(row)
            if part is not None and part.requires_grad:
                scaled = part if factor * share == 1.0 else part * (factor * share)
                scaled.backward(retain_graph=not (last and draw == len(parts) - 1))
                if share != 1.0 and phase.grads is not None:   # the row: the part's own gradient
                    phase.grads.scale_row(row, 1.0 / share)

    def _grads(self, params) -> list[torch.Tensor]:
        """The gradients of `params` that the ranks average. Under torchrun a rank whose share of the
        batch labels none of a task's rows has no gradient for that task's head: zeros then, so
        every rank sends the same tensors."""
        if self.dist.enabled:
            for p in params:
                if p.requires_grad and p.grad is None:
                    p.grad = torch.zeros_like(p)
        return [p.grad for p in params if p.grad is not None]

    def _everywhere(self, values: torch.Tensor) -> torch.Tensor:
        """The step's loss values as every rank sees them: averaged over the ranks, detached, on
        the CPU (T numbers, where the methods keep their state)."""
        values = values.detach().float().clone()
        self.dist.average_([values])
        return values.cpu()

    def _scale_heads(self, tasks: list[str], factors) -> None:
        """Each task head's gradient times its factor (DB-MTL: the gradient of log L_t)."""
        if factors is None:
            return
        for task, factor in zip(tasks, factors):
            for p in self.model.head(task).parameters():
                if p.grad is not None:
                    p.grad.mul_(float(factor))

    def _loss_values(self, totals: list) -> np.ndarray:
        """The step's task losses as numbers, every rank the same (a rank whose share labels none of
        a task's rows counts 0 for it)."""
        zero = torch.zeros((), device=self.device)
        return self._everywhere(torch.stack([zero if t is None else t.float() for t in totals])).double().numpy()

    def _scalarized_backward(self, totals: list[torch.Tensor], tasks: list[str]) -> np.ndarray:
        """The losses family: f(L) at the step's losses (every rank the same values), its gradient
        into the method's own tensors, and one backward of sum_k (df/dL_k) L_k through the model.
        The weights df/dL_k are returned (what the run logs)."""
        values = torch.stack(totals)
        point = self._everywhere(values).requires_grad_()
        own = [t for t in self.method.tensors() if t.requires_grad]
        f = self.method.scalarize(point, [self.task_index[t] for t in tasks])
        weights, *own_grads = torch.autograd.grad(f, [point, *own], allow_unused=True)
        for tensor, grad in zip(own, own_grads):
            tensor.grad = grad
        weighted = (weights.to(values.device, values.dtype) * values).sum()
        if weighted.requires_grad:
            weighted.backward()
        return weights.double().cpu().numpy()

    def _forward(self, unit: Unit, indices: np.ndarray, step: int, phase: str) -> tuple[dict, int, list]:
        """One unit's batch (this rank's share): the encoder once, then each of its tasks' loss on
        the rows that label it, in the method's `draws` parts (split_draws). Its losses (detached,
        for the log), its row count, and (task, parts) for each task in turn: parts
        [(loss, share of the rows)], None where this rank's share labels none of the task's rows."""
        rows = self.dist.shard(indices, self.method.draws)
        texts = [unit.texts[i] for i in rows]
        inputs = {k: torch.from_numpy(v).to(self.device, non_blocking=True)
                  for k, v in encode(self.tokenizer, unit.encoding, texts).items()}
        # the tasks the whole batch labels (every rank the same, whatever its share holds)
        present = [t for t in unit.tasks if unit.trains(t, indices)]
        with self.autocast:
            embedded = self.model.encode(unit.encoding, inputs)
        losses, task_parts = {}, []
        for task in present:
            parts, named = None, []   # named: every loss of the task's parts, to say which is not finite
            labeled = unit.labeled(task, rows)
            if labeled:
                parts = []
                for subset, share in split_draws(labeled, self.method.draws):
                    gold = [j for j in subset if unit.labels[task][rows[j]] is not None]   # the auxiliary losses read gold labels
                    with self.autocast:
                        output = self.model.head(task).from_embedding(embedded, None if len(subset) == len(rows) else subset)
                        loss = self.model.loss(task, output, self._target(unit, task, [rows[j] for j in subset], step))
                        extra = auxiliary_losses(self.config, self.model, self.tokenizer, task, [texts[j] for j in gold],
                                                 [unit.labels[task][rows[j]] for j in gold], self.device) \
                            if phase == "finetune" and gold else {}
                        if phase == "finetune":
                            extra.update(self._embedding_loss(unit, task, embedded, rows, subset, texts))
                    parts.append((loss + sum(extra.values()), share))
                    for name, value in ((task, loss), *((f"{task}:{n}", v) for n, v in extra.items())):
                        named.append((name, value))
                        part = value.detach() if share == 1.0 else value.detach() * share
                        losses[name] = part if name not in losses else losses[name] + part
            if not self.dist.all_true(parts is None or all(bool(torch.isfinite(t)) for t, _ in parts), self.device):
                if parts is None:
                    raise NonFiniteError(f"step {step + 1}: {task} loss is not finite on another rank")
                name, value = next((n, v) for n, v in named if not torch.isfinite(v))
                raise NonFiniteError(f"step {step + 1}: {name.replace(':', ' ')} loss is {value.item()}")
            task_parts.append((task, parts))
        return losses, len(rows), task_parts


def split_draws(labeled: list[int], draws: int) -> list[tuple[list[int], float]]:
    """A task's labeled rows as `draws` samples, each with its share of the rows: every draws-th
    row from the first, second, ... (a batch grouped by length keeps similar lengths in each);
    a task with fewer rows than draws uses all of them for every sample."""
    if draws == 1:
        return [(labeled, 1.0)]
    if len(labeled) < draws:
        return [(labeled, 1.0 / draws)] * draws
    return [(labeled[d::draws], len(labeled[d::draws]) / len(labeled)) for d in range(draws)]


def fold_draws(gram: np.ndarray, draws: int) -> np.ndarray:
    """The Gram matrix of the tasks' mean rows from that of their draws' rows (task t's in rows
    t * draws ..): what the run logs as the tasks' gradient cosines."""
    if draws == 1:
        return gram
    tasks = len(gram) // draws
    return gram.reshape(tasks, draws, tasks, draws).mean(axis=(1, 3))
