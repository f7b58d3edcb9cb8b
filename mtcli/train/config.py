"""Training configuration: one dataclass, written to runs/<name>/config.json.

Paths (the task file, data, model and runs folders) are kept resolved, so a run resumes
from any working directory; a saved configuration is read back field by field with its
types checked (`TrainConfig.from_saved`), since a run folder may come from anyone.
"""

import os
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated

from pydantic import Field

from mtcli.core.backbones import BACKBONES
from mtcli.core.errors import UserError, excerpt
from mtcli.core.data import resolve_data_dir
from mtcli.core.tasks import Task, check_names, load_task_file, with_encodings
from mtcli.core.typed import out_of_bounds, typed_values
from mtcli.run.folder import DERIVED
from mtcli.train.distillation import Annealing
from mtcli.train.samplers import parse_sampler
from mtcli.train.tracking import check_trackers
from mtcli.weightings import WEIGHTINGS, check_spec, parameters, spec_name

PHASES = ("pretrain", "finetune")
PHASE_LR = {"pretrain": 1e-3, "finetune": 5e-5}  # heads only / whole model (encoder; heads: head_lr)
# Flags (and recipe keys) whose TrainConfig field has another name; every other flag is its
# field with '-' for '_'. The one table of these names: the CLI, recipes and errors read it.
FIELD_OF = {"encoding": "encodings", "cosine-embedding-loss": "cosine_embedding"}


def field_of_flag(flag: str) -> str:
    """The TrainConfig field a flag sets: `--cosine-embedding-loss` (or Typer's parameter name,
    cosine_embedding_loss) -> cosine_embedding."""
    key = flag.lstrip("-").replace("_", "-")
    return FIELD_OF.get(key, key.replace("-", "_"))


def flag_of(field_name: str) -> str:
    """The flag that sets a TrainConfig field: cosine_embedding -> --cosine-embedding-loss."""
    renamed = {f: key for key, f in FIELD_OF.items()}
    return "--" + renamed.get(field_name, field_name.replace("_", "-"))


@dataclass
class TrainConfig:
    sampler: str = "proportional"
    combine: str = "pcgrad"          # a weighting, NAME[:key=value,...] (mtcli.weightings)
    task_weights: dict[str, Annotated[float, Field(ge=0)]] = field(default_factory=dict)
    upsample: dict[str, Annotated[int, Field(ge=1)]] = field(default_factory=dict)
    phase: str = "finetune"
    pooling: str = "mean"
    tasks: str | None = None         # a TOML task file (None: the built-in CS224N tasks)
    encodings: dict[str, str] = field(default_factory=dict)   # pair encodings overriding the declared ones
    simcse: Annotated[float, Field(ge=0)] = 0.0              # weight of the unsupervised SimCSE loss (0: off)
    mnrl: Annotated[float, Field(ge=0)] = 0.0                # weight of the multiple-negatives ranking loss on paraphrase positives
    cosine_embedding: Annotated[float, Field(ge=0)] = 0.0    # weight of CosineEmbeddingLoss on pair tasks (0: off)
    cosine_margin: Annotated[float, Field(ge=-1, le=1, description="a cosine")] = 0.0
    teacher: list[str] = field(default_factory=list)   # distil from these models (exports, checkpoints, run folders)
    teacher_annealing: str = "linear"   # the gold label's weight in the targets: linear 0 -> 1, or constant:LAMBDA
    teacher_temperature: Annotated[float, Field(ge=0.01, le=1000, description="1: the teacher's own probabilities")] = 1.0    # a classification teacher's logits divided by it (> 1: softer targets)
    distill_embeddings: Annotated[float, Field(ge=0, description="the loss's weight; 0: off")] = 0.0     # weight of the MSE of the student's sentence embeddings to the teacher's (0: off)
    pretrain_epochs: Annotated[int, Field(ge=0)] = 0         # first K epochs: heads only (encoder frozen, lr 1e-3), then `phase`
    epochs: Annotated[int, Field(ge=1)] = 3
    batch_size: Annotated[int, Field(ge=1)] = 32
    slots: Annotated[int, Field(ge=1)] | None = None         # task batches per optimizer step (None: one per task)
    group_by_length: bool = True     # batches of rows of similar length (less padding; same rows per epoch)
    lr: Annotated[float, Field(gt=0)] | None = None          # None: the phase's default
    head_lr: Annotated[float, Field(gt=0)] | None = None     # None: 1e-3 (new linear heads learn far too slowly at the encoder's rate)
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    warmup: Annotated[float, Field(ge=0, lt=1, description="a fraction of the steps")] = 0.1              # fraction of steps with linear warmup
    clip: Annotated[float, Field(ge=0)] = 1.0                # max gradient norm (0: off)
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    max_steps: Annotated[int, Field(ge=1)] | None = None
    limit: Annotated[int, Field(ge=1, description="it trains and evaluates on the first N rows of each task")] | None = None         # rows per task, train and dev
    train_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0      # a seeded random share of each task's training rows (dev untouched)
    save_every: Annotated[int, Field(ge=0)] = 0              # also save last/ every N steps (0: at epoch ends only)
    eval_every: Annotated[int, Field(ge=0)] = 0              # also evaluate dev every N steps (0: at epoch ends only); a sweep prunes on it
    log_to: list[str] = field(default_factory=list)   # trackers beside metrics.jsonl: tensorboard, mlflow
    skip_nonfinite: bool = False     # skip (and count) steps with a NaN/inf loss or gradient
    activation_checkpointing: bool = False   # recompute the encoder's activations in backward: less memory, same gradients
    model_dir: str | None = None
    data_dir: str | None = None
    out: str = "runs"
    name: str | None = None
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    device: str = "auto"
    eval_batch_size: Annotated[int, Field(ge=1)] = 64
    log_every: Annotated[int, Field(ge=1)] = 10
    progress_every: Annotated[float, Field(gt=0, description="seconds")] = 30.0     # seconds between progress lines when stdout is not a terminal

    def __post_init__(self):
        for name in PATH_FIELDS:
            if not names_backbone(name, getattr(self, name)):
                setattr(self, name, resolved_path(getattr(self, name)))
        if any(not str(path).strip() for path in self.teacher):
            raise UserError("--teacher: an empty path (a stray comma?); pass PATH[,PATH...], each a model folder")
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
        """Every number within the bounds its field declares (pydantic checks, core/typed.py words
        it), before anything is read or written."""
        found = out_of_bounds(self)
        if found:
            name, key, number, problem = found
            shown = f"{number:g}" if isinstance(number, float) else number
            raise UserError(f"{flag_of(name)} {shown if key is None else f'{key}={shown}'}: {problem}")
        if self.task_weights and not any(self.weight(t) > 0 for t in tasks):
            raise UserError("--task-weights: every task weight is 0, so nothing would train: give one a positive weight")

    def _check_distillation(self) -> None:
        Annealing.parse(self.teacher_annealing)
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


def option_defaults() -> dict:
    """Each option's default as config.json writes it: what a run written before an option
    existed trained with (an option arrives with the default that keeps the older behaviour)."""
    return {f.name: f.default_factory() if f.default_factory is not MISSING else f.default
            for f in fields(TrainConfig) if f.init}


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
