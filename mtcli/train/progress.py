"""What a run says and logs while it trains: the opening lines (the run, the sampler, the steps);
the steps' records in metrics.jsonl, buffered between log intervals; and where no progress bar
shows (nohup, CI, a cluster job: stdout is not a terminal) a line every --progress-every seconds
with the step, the epoch, the losses, examples/s and the time left, measured from the first line
this process printed (a resumed run's estimate counts its own steps only)."""

from __future__ import annotations

import time

from mtcli.weightings import kernel


def announce(trainer) -> None:
    """The run's opening lines: its folder, device and size, where it resumes, its plan."""
    config, pos, dist = trainer.config, trainer.position, trainer.dist
    parameters = sum(p.numel() for p in trainer.model.parameters())
    resumed = f"  (resumed at step {pos.step}, epoch {pos.epoch})" if pos.step else ""
    ranks = f"  x {dist.world} processes" if dist.enabled else ""
    console = trainer.console
    console.print(f"[bold]run[/] {trainer.run_dir}  device {trainer.device}{ranks}  {parameters:,} parameters{resumed}")
    console.print(f"[bold]sampler[/] {trainer.sampler.describe()}")
    console.print(f"[bold]steps[/] {trainer.total_steps} in all; combine {trainer.weighting.spec}; lr "
                  f"{config.learning_rate:g} ({config.phase}), heads {config.head_lr_of(config.phase):g}; "
                  f"kernel {kernel.backend(trainer.device)}")


class StepRecords:
    """The steps' records (losses, learning rate, gradient statistics), kept until the log interval
    ends and then written together (one host sync per interval), with the interval's examples/s."""

    def __init__(self, log, position, steps_per_epoch: int):
        self.log, self.position, self.steps_per_epoch = log, position, steps_per_epoch
        self.pending: list = []
        self.started, self.examples = time.perf_counter(), 0

    def add(self, lr: float, result) -> None:
        """The step just taken (the position has moved past it)."""
        pos = self.position
        self.pending.append((pos.step, pos.epoch - 1 + pos.index / self.steps_per_epoch, lr, result))
        self.examples += result.examples

    def interval_end(self) -> tuple[str, float]:
        """Write the interval's records; its losses' summary and examples/s; a new interval begins."""
        speed = self.examples / max(1e-9, time.perf_counter() - self.started)
        shown = self.flush(speed)
        self.started, self.examples = time.perf_counter(), 0
        return shown, speed

    def flush(self, speed: float = 0.0) -> str:
        """Write the records kept so far (before an evaluation, a save or a stop) and return the
        last losses' summary."""
        last: dict[str, float] = {}
        for step, progress, lr, result in self.pending:
            values = {t: float(v) for t, v in result.losses.items()}
            for t, v in values.items():
                self.position.epoch_losses[t].append(v)
                last[t] = v
            self.log.write("step", step=step, epoch_progress=round(progress, 5), loss=values, lr=lr,
                           examples_per_s=round(speed, 2), **result.gradient_record())
        self.pending = []
        return "  ".join(f"{t} {v:.3f}" for t, v in sorted(last.items()) if ":" not in t)


class ProgressLines:
    def __init__(self, console, total_steps: int, epochs: int, every: float):
        self.console, self.total_steps, self.epochs, self.every = console, total_steps, epochs, every
        self.last = 0.0                  # when the last line was printed (0: not yet)
        self.clock = (0.0, 0)            # (time, step) the estimate counts from

    def step(self, step: int, epoch: int, losses: str, speed: float) -> None:
        """After a logged step: a line, if the output is no terminal and --progress-every has passed."""
        now = time.perf_counter()
        if self.console.is_terminal or now - self.last < self.every:
            return
        if self.last == 0.0:  # the first call: start the clock
            self.last, self.clock = now, (now, step)
            return
        started, first_step = self.clock
        left = (self.total_steps - step) * (now - started) / max(step - first_step, 1)
        self.console.print(f"step {step}/{self.total_steps}  epoch {epoch}/{self.epochs}  {losses}  {speed:.0f} ex/s  "
                           f"eta {duration(left)}", highlight=False)
        self.last = now


class CountLines:
    """Where no bar shows: a line every `every` seconds about a counted job that runs before the
    steps (a teacher labelling rows): what, how many of how many, per second, the time left."""

    def __init__(self, console, every: float):
        self.console, self.every = console, every
        self.what, self.total, self.done, self.started, self.last = "", 0, 0, 0.0, 0.0

    def start(self, what: str, total: int) -> None:
        self.what, self.total, self.done = what, total, 0
        self.started = self.last = time.perf_counter()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if self.console.is_terminal or now - self.last < self.every or self.done >= self.total:
            return
        rate = self.done / max(now - self.started, 1e-9)
        self.console.print(f"{self.what}: {self.done:,}/{self.total:,}  {rate:.0f}/s  eta "
                           f"{duration((self.total - self.done) / max(rate, 1e-9))}", highlight=False)
        self.last = now


def duration(seconds: float) -> str:
    """1h02m, 3m05s, 42s."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
