"""What a run is made of, built in order from its configuration: the tasks; the tokenizer and
encoder (the backbone, or a resumed run's last/) and one head per task; the training and dev
data; the units the sampler draws (a task, or tasks that share a file and a forward pass),
with the unlabeled text a teacher will label under distillation; the sampler's plan; the
multitask method."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from mtcli.core.data import Split, notes, read_splits, read_unlabeled
from mtcli.core.encoding import row_lengths
from mtcli.core.paths import resolve_model_dir
from mtcli.core.tasks import Task
from mtcli.core.tokenizer import Tokenizer
from mtcli.model import MinBert
from mtcli.model.multitask import HeadConfig, MultitaskModel
from mtcli.model.loading import ENCODER_CONFIG
from mtcli.train.config import TrainConfig
from mtcli.train.distributed import Distributed
from mtcli.train.samplers import TaskSampler
from mtcli.train.teacher import Teacher, teachers_for
from mtcli.train.units import Unit, make_units, subsample, unit_factors
from mtcli.weightings import make
from mtcli.weightings.base import Method


@dataclass
class Parts:
    tasks: dict[str, Task]
    tokenizer: Tokenizer
    model: MultitaskModel
    dev_splits: dict[str, Split]
    units: dict[str, Unit]
    teachers: dict[str, Teacher]        # each taught task's teacher (distillation)
    unlabeled: list[str]                # the tasks whose unlabeled files were read
    sampler: TaskSampler
    steps_per_epoch: int
    total_steps: int
    weighting: Method


def build(config: TrainConfig, device: torch.device, dist: Distributed, console: Console,
          init_dir: Path | None = None) -> Parts:
    """The run's parts on `device`, every rank starting from rank 0's weights. `init_dir`: where
    the encoder and tokenizer start from (default: config.model_dir)."""
    model_dir = init_dir or resolve_model_dir(config.model_dir)
    tasks = config.load_tasks()
    heads = HeadConfig(pooling=config.pooling, dropout=config.dropout)
    tokenizer = Tokenizer.from_dir(model_dir, max_length=heads.max_length)
    encoder = MinBert.from_pretrained(model_dir, dropout=config.dropout)
    tokenizer.check_vocabulary(encoder.config.vocab_size, model_dir / ENCODER_CONFIG)
    encoder.recompute_activations = config.activation_checkpointing
    model = MultitaskModel(encoder, heads, tasks).to(device)
    train_splits = read_splits(tasks, "train", limit=config.limit)
    dev_splits = read_splits(tasks, "dev", limit=config.limit)
    for note in notes(train_splits, dev_splits):
        console.print(f"[yellow]note[/] {note}", highlight=False)
    teachers = teachers_for(config.teacher, tasks) if config.teacher else {}
    unlabeled = {name: read_unlabeled(task, tokenizer, limit=config.limit) for name, task in tasks.items()
                 if task.unlabeled and name in teachers}
    for name in (n for n, t in tasks.items() if t.unlabeled and n not in teachers):
        console.print(f"[yellow]note[/] task {name}: its unlabeled files are read only when a teacher labels them "
                      f"(--teacher)", highlight=False)
    units = {name: subsample(unit, config.train_fraction, config.seed)
             for name, unit in make_units(tasks, train_splits, unlabeled).items()}
    lengths = {name: row_lengths(tokenizer, unit.encoding, unit.texts)
               for name, unit in units.items()} if config.group_by_length else None
    sampler = TaskSampler(config.sampler, {name: len(unit) for name, unit in units.items()},
                          batch_size=config.batch_size, epochs=config.epochs, seed=config.seed,
                          upsample=unit_factors(units, config.upsample),
                          slots_per_step=config.slots or len(units), lengths=lengths)
    steps_per_epoch = sampler.steps_per_epoch()
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    dist.broadcast_(list(model.state_dict().values()))  # every rank starts from rank 0's weights
    weighting = make(config.combine, num_tasks=len(tasks), seed=config.seed,
                     task_weights=[config.weight(t) for t in tasks])
    dist.check_batch(config.batch_size, weighting.draws)
    return Parts(tasks, tokenizer, model, dev_splits, units, teachers, list(unlabeled), sampler, steps_per_epoch,
                 total_steps, weighting)
