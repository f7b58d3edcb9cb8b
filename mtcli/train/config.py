"""Training configuration: one dataclass, written to runs/<name>/config.json.

Paths (the task file, data, model and runs folders) are kept resolved, so a run resumes
from any working directory; a saved configuration is read back field by field with its
types checked (`TrainConfig.from_saved`), since a run folder may come from anyone.
"""

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mtcli.core.backbones import BACKBONES
from mtcli.core.errors import UserError, excerpt
from mtcli.core.typed import typed_values
from mtcli.core.data import resolve_data_dir
from mtcli.core.tasks import Task, check_names, load_task_file, with_encodings
from mtcli.run.folder import DERIVED
from mtcli.train.distillation import Annealing
from mtcli.train.samplers import parse_sampler
from mtcli.train.tracking import check_trackers
from mtcli.weightings import WEIGHTINGS, check_spec, parameters, spec_name

PHASES = ("pretrain", "finetune")
PHASE_LR = {"pretrain": 1e-3, "finetune": 5e-5}  # heads only / whole model (encoder; heads: head_lr)


@dataclass
class TrainConfig:
    sampler: str = "proportional"
    combine: str = "pcgrad"          # a weighting, NAME[:key=value,...] (mtcli.weightings)
    task_weights: dict[str, float] = field(default_factory=dict)
    upsample: dict[str, int] = field(default_factory=dict)
    phase: str = "finetune"
    pooling: str = "mean"
    tasks: str | None = None         # a TOML task file (None: the built-in CS224N tasks)
    encodings: dict[str, str] = field(default_factory=dict)   # pair encodings overriding the declared ones
    simcse: float = 0.0              # weight of the unsupervised SimCSE loss (0: off)
    mnrl: float = 0.0                # weight of the multiple-negatives ranking loss on paraphrase positives
    cosine_embedding: float = 0.0    # weight of CosineEmbeddingLoss on pair tasks (0: off)
    cosine_margin: float = 0.0
    teacher: list[str] = field(default_factory=list)   # distil from these models (exports, checkpoints, run folders)
    teacher_annealing: str = "linear"   # the gold label's weight in the targets: linear 0 -> 1, or constant:LAMBDA
    teacher_temperature: float = 1.0    # a classification teacher's logits divided by it (> 1: softer targets)
    distill_embeddings: float = 0.0     # weight of the MSE of the student's sentence embeddings to the teacher's (0: off)
    pretrain_epochs: int = 0         # first K epochs: heads only (encoder frozen, lr 1e-3), then `phase`
    epochs: int = 3
    batch_size: int = 32
    slots: int | None = None         # task batches per optimizer step (None: one per task)
    group_by_length: bool = True     # batches of rows of similar length (less padding; same rows per epoch)
    lr: float | None = None          # None: the phase's default
    head_lr: float | None = None     # None: 1e-3 (new linear heads learn far too slowly at the encoder's rate)
    weight_decay: float = 0.01
    warmup: float = 0.1              # fraction of steps with linear warmup
    clip: float = 1.0                # max gradient norm (0: off)
    dropout: float = 0.1
    max_steps: int | None = None
    limit: int | None = None         # rows per task, train and dev
    train_fraction: float = 1.0      # a seeded random share of each task's training rows (dev untouched)
    save_every: int = 0              # also save last/ every N steps (0: at epoch ends only)
    eval_every: int = 0              # also evaluate dev every N steps (0: at epoch ends only); a sweep prunes on it
    log_to: list[str] = field(default_factory=list)   # trackers beside metrics.jsonl: tensorboard, mlflow
    skip_nonfinite: bool = False     # skip (and count) steps with a NaN/inf loss or gradient
    activation_checkpointing: bool = False   # recompute the encoder's activations in backward: less memory, same gradients
    model_dir: str | None = None
    data_dir: str | None = None
    out: str = "runs"
    name: str | None = None
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 64
    log_every: int = 10
    progress_every: float = 30.0     # seconds between progress lines when stdout is not a terminal

    def __post_init__(self):
        for name in PATH_FIELDS:
            if not names_backbone(name, getattr(self, name)):
                setattr(self, name, resolved_path(getattr(self, name)))
        self.teacher = [resolved_path(path) for path in self.teacher]
        if self.name is not None:
            check_folder_name(self.name, "a run name", "sick-upgrad")
        parse_sampler(self.sampler)
        for value, allowed, what in ((self.phase, PHASES, "phase"), (self.device, ("auto", "cpu", "cuda"), "device")):
            if value not in allowed:
                raise UserError(f"--{what} {value!r} is not one of {', '.join(allowed)}")
        check_spec(self.combine)
        check_trackers(self.log_to)
        tasks = self.load_tasks()  # the task file is checked before anything is read or written
        for option, mapping in (("--task-weights", self.task_weights), ("--upsample", self.upsample)):
            check_names(tasks, mapping, option)
        weighting = WEIGHTINGS[spec_name(self.combine)]
        uses_weights = "task_weights" in parameters(weighting)
        if uses_weights and not self.task_weights:
            example = ",".join(f"{name}={0.5 if i == 0 else 1}" for i, name in enumerate(tasks))
            raise UserError(f"--combine {spec_name(self.combine)} needs --task-weights, for example {example}")
        if self.task_weights and not uses_weights:
            raise UserError(f"--task-weights apply to --combine weighted; {spec_name(self.combine)} computes its own "
                            f"weights: drop --task-weights or pass --combine weighted")
        self._check_numbers(tasks)
        self._check_distillation()
        if (self.pretrain_epochs or self.phase == "pretrain") and all(t.head_is_cosine for t in tasks.values()):
            flag = "--pretrain-epochs" if self.pretrain_epochs else "--phase pretrain"
            raise UserError(f"{flag} trains the heads alone (the encoder frozen), and every task's head here is the "
                            f"cosine of its pair's embeddings, without parameters: nothing would train; drop {flag}")
        if not 0 <= self.pretrain_epochs < self.epochs:
            raise UserError(f"--pretrain-epochs {self.pretrain_epochs} must be between 0 and --epochs - 1 ({self.epochs - 1})")
        if self.slots == 1 and weighting.family == "gram" and weighting.reads_gram:
            raise UserError(f"--combine {spec_name(self.combine)} weighs the gradients of several tasks per step: "
                            f"drop --slots 1")

    def _check_numbers(self, tasks: dict[str, Task]) -> None:
        """Every numeric option in its range, before anything is read or written."""
        def fail(option: str, value, rule: str):
            shown = f"{value:g}" if isinstance(value, float) else value
            raise UserError(f"--{option} {shown}: {rule}")

        at_least = {"epochs": 1, "batch_size": 1, "slots": 1, "max_steps": 1, "eval_batch_size": 1, "save_every": 0, "eval_every": 0,
                    "log_every": 1, "pretrain_epochs": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if value is not None and value < low:
                fail(name.replace("_", "-"), value, f"must be at least {low}")
        if self.limit is not None and self.limit < 1:
            fail("limit", self.limit, "must be at least 1 (it trains and evaluates on the first N rows of each task)")
        if not 0 <= self.seed < 2**32:
            fail("seed", self.seed, f"must be between 0 and {2**32 - 1}")
        for name in ("lr", "head_lr"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                fail(name.replace("_", "-"), value, "must be a positive number")
        ranges = {"dropout": (0, 1, "in [0, 1)"), "warmup": (0, 1, "a fraction of the steps in [0, 1)")}
        for name, (low, high, rule) in ranges.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value < high):
                fail(name, value, f"must be {rule}")
        if not (math.isfinite(self.progress_every) and self.progress_every > 0):
            fail("progress-every", self.progress_every, "must be a number of seconds > 0")
        if not (math.isfinite(self.train_fraction) and 0 < self.train_fraction <= 1):
            fail("train-fraction", self.train_fraction, "must be in (0, 1]")
        if not (math.isfinite(self.cosine_margin) and -1 <= self.cosine_margin <= 1):
            fail("cosine-margin", self.cosine_margin, "must be in [-1, 1] (a cosine)")
        for option, value in (("weight-decay", self.weight_decay), ("clip", self.clip), ("simcse", self.simcse),
                              ("mnrl", self.mnrl), ("cosine-embedding-loss weight", self.cosine_embedding)):
            if not (math.isfinite(value) and value >= 0):
                fail(option, value, "must be a finite number >= 0")
        for task, weight in self.task_weights.items():
            if not (math.isfinite(weight) and weight >= 0):
                fail("task-weights", f"{task}={weight}", "task weights must be finite numbers >= 0")
        if self.task_weights and not any(self.weight(t) > 0 for t in tasks):
            raise UserError("--task-weights: every task weight is 0, so nothing would train: give one a positive weight")
        for task, factor in self.upsample.items():
            if factor < 1:
                fail("upsample", f"{task}={factor}", "repeat factors must be whole numbers >= 1")

    def _check_distillation(self) -> None:
        Annealing.parse(self.teacher_annealing)
        if not (math.isfinite(self.teacher_temperature) and self.teacher_temperature > 0):
            raise UserError(f"--teacher-temperature {self.teacher_temperature:g}: must be a positive number (1: the "
                            f"teacher's own probabilities)")
        if not (math.isfinite(self.distill_embeddings) and self.distill_embeddings >= 0):
            raise UserError(f"--distill-embeddings {self.distill_embeddings:g}: must be a finite number >= 0 (the "
                            f"loss's weight; 0: off)")
        changed = [flag for flag, field in (("--teacher-annealing", "teacher_annealing"),
                                            ("--teacher-temperature", "teacher_temperature"),
                                            ("--distill-embeddings", "distill_embeddings"))
                   if getattr(self, field) != getattr(TrainConfig, field)]
        if changed and not self.teacher:
            raise UserError(f"{changed[0]} shapes the targets a teacher gives: pass --teacher PATH, or drop {changed[0]}")
        if len(set(self.teacher)) != len(self.teacher):
            raise UserError("--teacher: a teacher is named twice; name each once")

    def load_tasks(self) -> dict[str, Task]:
        """The tasks this run trains: the task file's, read from --data-dir if given, with --encoding applied."""
        tasks = load_task_file(self.tasks, resolve_data_dir(self.data_dir))
        return with_encodings(tasks, self.encodings)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else PHASE_LR[self.phase]

    def phase_of(self, epoch: int) -> str:
        """The phase of 1-based `epoch`: head pretraining for the first --pretrain-epochs."""
        return "pretrain" if epoch <= self.pretrain_epochs else self.phase

    def lr_of(self, phase: str) -> float:
        return PHASE_LR["pretrain"] if phase == "pretrain" and phase != self.phase else self.learning_rate

    def head_lr_of(self, phase: str) -> float:
        if self.head_lr is not None:
            return self.head_lr
        return self.lr_of(phase) if phase == "pretrain" else PHASE_LR["pretrain"]

    def weight(self, task: str) -> float:
        return float(self.task_weights.get(task, 1.0))

    def to_dict(self) -> dict:
        return {**asdict(self), "learning_rate": self.learning_rate}

    @classmethod
    def from_saved(cls, values, source: str | Path) -> "TrainConfig":
        """A configuration read back from a file (a run's config.json): every field of the right
        type, and valid, or one UserError naming the file and the field."""
        values = typed_values(cls, values, source, ignore=DERIVED)
        try:
            return cls(**values)
        except UserError as e:
            raise UserError(f"{source}: {e}") from None


PATH_FIELDS = ("tasks", "model_dir", "data_dir", "out")
PATH_LIST_FIELDS = ("teacher",)
# How a run computes and keeps itself, not what it trains: a resumed run (a sweep's continued
# trial) may set these anew
RUN_NAME = re.compile(r"[^/\\\x00-\x1f\x7f]{1,255}")


def check_folder_name(name: str, what: str, example: str) -> None:
    """A --name is one folder name inside --out: no '/', no control characters, not '.' or '..'
    (so neither `../x` nor an absolute path leaves --out)."""
    if not RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise UserError(f"--name {excerpt(name)}: {what} is one folder name inside --out (no '/', no control "
                        f"characters, not '.' or '..'), e.g. --name {example}")


def resolved_path(path: str | None) -> str | None:
    """An absolute path without symlinks (what a run records, to be found from any directory)."""
    return None if path is None else os.path.realpath(Path(path).expanduser())


def names_backbone(field: str, value) -> bool:
    """`--model-dir NAME` of a known backbone (mtcli backbones): a name, kept as it is, not a path."""
    return field == "model_dir" and isinstance(value, str) and value in BACKBONES


def path_in(folder: Path, field: str, value: str) -> str:
    """A path option read from a file in `folder` (a recipe, a sweep space): relative to that folder."""
    return value if names_backbone(field, value) else str(folder / Path(value).expanduser())


def parse_task_map(text: str | None, option: str, cast=float) -> dict:
    """'a=0.5,b=1' -> {'a': 0.5, 'b': 1.0} (cast=str: 'a=cross' -> {'a': 'cross'}); a clear error otherwise."""
    if not text:
        return {}
    result = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if cast is str and sep and name.strip() and value.strip():
            result[name.strip()] = value.strip()
            continue
        try:
            if not sep or cast is str:
                raise ValueError
            number = float(value)
            if cast is int and number != int(number):
                raise ValueError
            result[name.strip()] = cast(number)
        except (ValueError, OverflowError):
            shape = "task=mode pairs like para=cross,sts=cosine" if cast is str else "task=number pairs like sst=0.5,para=1,sts=1"
            raise UserError(f"{option} {text!r}: expected {shape}") from None
    return result
