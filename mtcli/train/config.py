"""Training configuration: one dataclass, written to runs/<name>/config.json."""

from dataclasses import asdict, dataclass, field

from mtcli.errors import UserError
from mtcli.tasks import TASKS
from mtcli.train.gradients import COMBINES
from mtcli.train.samplers import SAMPLERS

PHASES = ("pretrain", "finetune")
PHASE_LR = {"pretrain": 1e-3, "finetune": 2e-5}  # heads only / whole model


@dataclass
class TrainConfig:
    sampler: str = "proportional"
    combine: str = "pcgrad"
    task_weights: dict[str, float] = field(default_factory=dict)
    upsample: dict[str, int] = field(default_factory=dict)
    phase: str = "finetune"
    pooling: str = "mean"
    para_mode: str = "cross"
    sts_mode: str = "cross"
    epochs: int = 3
    batch_size: int = 32
    lr: float | None = None          # None: the phase's default
    weight_decay: float = 0.01
    warmup: float = 0.1              # fraction of steps with linear warmup
    clip: float = 1.0                # max gradient norm (0: off)
    dropout: float = 0.1
    max_steps: int | None = None
    limit: int | None = None         # rows per task, train and dev
    grad_stats: bool = False         # log task-gradient cosines even without PCGrad
    save_every: int = 0              # also save last/ every N steps (0: at epoch ends only)
    skip_nonfinite: bool = False     # skip (and count) steps with a NaN/inf loss or gradient
    model_dir: str | None = None
    data_dir: str | None = None
    out: str = "runs"
    name: str | None = None
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 64
    log_every: int = 10

    def __post_init__(self):
        for value, allowed, what in ((self.sampler, SAMPLERS, "sampler"), (self.combine, COMBINES, "combine"),
                                     (self.phase, PHASES, "phase"), (self.device, ("auto", "cpu", "cuda"), "device")):
            if value not in allowed:
                raise UserError(f"--{what} {value!r} is not one of {', '.join(allowed)}")
        for option, mapping in (("--task-weights", self.task_weights), ("--upsample", self.upsample)):
            unknown = set(mapping) - set(TASKS)
            if unknown:
                raise UserError(f"{option} names unknown task(s) {', '.join(sorted(unknown))}; tasks are {', '.join(TASKS)}")
        if self.combine == "weighted" and not self.task_weights:
            raise UserError("--combine weighted needs --task-weights, for example sst=0.5,para=1,sts=1")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else PHASE_LR[self.phase]

    def weight(self, task: str) -> float:
        return float(self.task_weights.get(task, 1.0))

    def to_dict(self) -> dict:
        return {**asdict(self), "learning_rate": self.learning_rate}


def parse_task_map(text: str | None, option: str, cast=float) -> dict:
    """'sst=0.5,para=1,sts=1' -> {'sst': 0.5, ...}; a clear error for anything else."""
    if not text:
        return {}
    result = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            number = float(value)
            if cast is int and number != int(number):
                raise ValueError
            result[name.strip()] = cast(number)
        except ValueError:
            raise UserError(f"{option} {text!r}: expected task=number pairs like sst=0.5,para=1,sts=1") from None
    return result
