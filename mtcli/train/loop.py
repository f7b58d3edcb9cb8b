"""The run: its parts built (build.py), then epochs of the sampler's plan, one `TrainStep` per
step (step.py), logging and progress, the non-finite policy, signals at a step boundary; at
each epoch's end the dev evaluation (dev.py) and the checkpoints (checkpoints.py).

A run can be killed at any point and continued with `--resume RUN_DIR` (resumption.py): `last/`
holds the weights together with the optimizer, scheduler, RNG states, the weighting's state
and the position in the sampler's plan (state.py), and the continued run is bit-identical
(on CPU) to one that was never interrupted.
"""

import math
import random
import signal
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mtcli.core.errors import Interrupted, UserError
from mtcli.core.fileio import write_json
from mtcli.core.runlog import MetricsLog, NullLog, read_metrics
from mtcli.core.stopping import StopRequest, deferred_stop
from mtcli.eval.plots import plot_curves
from mtcli.model.predict import resolve_device
from mtcli.run.folder import CONFIG, LAST, METRICS, TEACHER_LABELS
from mtcli.run.provenance import describe_sources, write_record
from mtcli.train.build import build
from mtcli.train.checkpoints import Checkpoints
from mtcli.train.config import TrainConfig
from mtcli.train.dev import DevEvaluation
from mtcli.train.distributed import Distributed
from mtcli.train.objectives import EmbeddingDistillation
from mtcli.train.progress import ProgressLines
from mtcli.train.recipe import recipe_of, write_recipe
from mtcli.train.tracking import TrackedLog, Trackers, check_mlflow_store
from mtcli.train.state import Position
from mtcli.train.step import NonFiniteError, Phase, StepResult, TrainStep
from mtcli.train.teacher import teach, write_labels
from mtcli.weightings import kernel

__all__ = ["NonFiniteError", "Trainer", "train", "resume"]


class Trainer:
    def __init__(self, config: TrainConfig, console: Console | None = None, *, run_dir: Path | None = None,
                 init_dir: Path | None = None, on_eval=None):
        """`init_dir`: where the encoder and tokenizer start from (default: config.model_dir);
        a resumed run starts from its own last/ checkpoint, which is also a backbone folder.
        `on_eval(step, results)`: called after every dev evaluation (every --eval-every steps and
        at epoch ends), on the main process; what it raises stops the run (a sweep's pruner)."""
        self.config = config
        device = resolve_device(config.device)
        self.dist = Distributed.from_env(use_cuda=device.type == "cuda")
        self.dist.check_batch(config.batch_size)
        self.device = torch.device("cuda", self.dist.local_rank) if device.type == "cuda" and self.dist.enabled else device
        # soft_wrap: a line stays one line in a log file (nohup, CI), whatever the width
        self.console = (console or Console(stderr=True, soft_wrap=True)) if self.dist.is_main else Console(quiet=True)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)
        parts = build(config, self.device, self.dist, self.console, init_dir)   # model, data, units, sampler, method
        self.tasks, self.tokenizer, self.model, self.units = parts.tasks, parts.tokenizer, parts.model, parts.units
        self.sampler, self.weighting, self.teachers = parts.sampler, parts.weighting, parts.teachers
        self.steps_per_epoch, self.total_steps = parts.steps_per_epoch, parts.total_steps
        name = config.name or f"{datetime.now():%Y%m%d-%H%M%S}-{self.sampler.kind}-{self.weighting.name}"
        self.run_dir = Path(run_dir) if run_dir is not None else Path(config.out) / name
        self.teacher_labels, self.distiller = {}, None
        if self.teachers:   # distillation: each taught task's rows labelled by its teacher, once (teacher.py)
            self.units, self.teacher_labels = teach(self.units, self.tasks, self.teachers, config, self.run_dir,
                                                    str(self.device), self.console, own=run_dir is not None,
                                                    resuming=init_dir is not None)
        if config.distill_embeddings > 0:
            widths = {l.embeddings.shape[-1] for l in self.teacher_labels.values() if l.embeddings is not None}
            self.distiller = EmbeddingDistillation(self.model.encoder.hidden_size, widths).to(self.device)
            self.dist.broadcast_(list(self.distiller.state_dict().values()))
        self.train_step = TrainStep(self.model, self.tokenizer, config, self.units, self.weighting,
                                    self.dist, self.device, self.total_steps, self.distiller)
        self.phase: Phase | None = None
        self._enter_phase(1)
        self.best_overall = -math.inf
        self.position = Position()
        self.restart = False  # resuming a run that saved no checkpoint: it starts again in its folder
        self.lines = ProgressLines(self.console, self.total_steps, config.epochs, config.progress_every)
        self.sources = describe_sources(config.tasks, self.tasks, parts.unlabeled) if self.dist.is_main else None
        self.dev = DevEvaluation(self.model, self.tokenizer, parts.dev_splits, config.eval_batch_size, self.device,
                                 self.run_dir, self.console, on_eval)
        self.checkpoints = Checkpoints(self.run_dir, config, self.model, self.tokenizer, self.device, self.dist.world)

    # ------------------------------------------------------------------ phases

    def _enter_phase(self, epoch: int) -> None:
        """Freeze or unfreeze the encoder for `epoch`'s phase; a new phase gets a fresh
        optimizer and schedule over its own steps (head pretraining, then fine-tuning)."""
        config = self.config
        name = config.phase_of(epoch)
        if self.phase is not None and name == self.phase.name:
            return
        start = (epoch - 1) * self.steps_per_epoch
        end = config.pretrain_epochs * self.steps_per_epoch if name == "pretrain" and config.phase != "pretrain" \
            else self.total_steps
        span = max(1, min(end, self.total_steps) - start)
        self.phase = Phase.start(name, self.model, config, span, self.weighting,
                                 self.distiller.parameters() if self.distiller is not None else ())

    # ------------------------------------------------------------------ resume

    @classmethod
    def resume(cls, run_dir: str | Path, console: Console | None = None, on_eval=None,
               settings: dict | None = None) -> "Trainer":
        """The run in `run_dir`, rebuilt from its folder and checked, at the position its last/
        checkpoint saved (train/resumption.py). `on_eval` as for a new run; `settings`: new values of
        what may change on resume (activation checkpointing, --save-every)."""
        from mtcli.train.resumption import resumed

        return resumed(cls, run_dir, console, on_eval, settings)

    # ------------------------------------------------------------------ one step

    def step(self, slots, step: int) -> StepResult:
        """One optimizer step of the current phase (mtcli/train/step.py)."""
        return self.train_step(self.phase, slots, step)

    # ------------------------------------------------------------------ the run

    def run(self) -> Path:
        config, console, pos, main = self.config, self.console, self.position, self.dist.is_main
        if main and "mlflow" in config.log_to:
            check_mlflow_store()   # before the run folder is made: a bad store is one line, not a traceback later
        if pos.step == 0:
            exists = self.run_dir.exists() and any(self.run_dir.iterdir()) and not self.restart
            if not self.dist.all_true(not exists, self.device):
                raise UserError(f"{self.run_dir}: run folder exists; pick another --name (or --resume it)")
            self.dist.barrier()
            if main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                if self.restart:  # its own log of the steps that no checkpoint kept
                    (self.run_dir / METRICS).unlink(missing_ok=True)
                write_json(self.run_dir / CONFIG, config.to_dict())
                write_recipe(self.run_dir, config)   # what `mtcli train --config` reads: the run again
                write_record(self.run_dir, self.sources)
        if main and self.teacher_labels:
            write_labels(self.run_dir / TEACHER_LABELS, self.teacher_labels)   # what a resume (or a sibling run) reuses
        self._announce()
        self.checkpoints.start(pos.step)
        log = MetricsLog(self.run_dir / METRICS) if main else NullLog()
        if main and config.log_to:   # TensorBoard, MLflow: views of metrics.jsonl
            log = TrackedLog(log, Trackers(config.log_to, self.run_dir, recipe_of(config)))
        start = time.perf_counter()
        progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[speed]}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        try:
            with progress, deferred_stop() as stop:
                bar = progress.add_task("train", total=self.total_steps, completed=pos.step, epoch=pos.epoch,
                                        losses="", speed="")
                while pos.epoch <= config.epochs and pos.step < self.total_steps:
                    self._run_epoch(log, progress, bar, stop)
            if self.dist.enabled:  # every rank applied the same updates: check it, and say so
                divergence = self.dist.max_parameter_divergence(list(self.model.parameters()))
                log.write("ddp", world=self.dist.world, max_parameter_divergence=divergence)
                console.print(f"[bold]ddp[/] {self.dist.world} processes; parameters identical across ranks: "
                              f"{'yes' if divergence == 0 else f'no (max |diff| {divergence:.3g})'}")
        finally:
            log.close()
            self.dist.close()
        if main:
            plot_curves(read_metrics(self.run_dir / METRICS), list(self.tasks), self.run_dir / "curves.png")
            skipped = f"; {pos.skipped} non-finite steps skipped" if pos.skipped else ""
            console.print(f"[bold]done[/] {pos.step} steps in {time.perf_counter() - start:.0f}s; best overall "
                          f"{self.best_overall:.4f}; checkpoints: {', '.join(self.checkpoints.saved()) or 'none'}{skipped}")
        if stop.requested:   # it came after the last step's check (in the final evaluation or save): still a stop
            raise Interrupted(stop.signum, f"the run had finished: {self.run_dir}")
        return self.run_dir

    def _announce(self) -> None:
        config, pos = self.config, self.position
        parameters = sum(p.numel() for p in self.model.parameters())
        resumed = f"  (resumed at step {pos.step}, epoch {pos.epoch})" if pos.step else ""
        ranks = f"  x {self.dist.world} processes" if self.dist.enabled else ""
        self.console.print(f"[bold]run[/] {self.run_dir}  device {self.device}{ranks}  {parameters:,} parameters{resumed}")
        self.console.print(f"[bold]sampler[/] {self.sampler.describe()}")
        self.console.print(f"[bold]steps[/] {self.total_steps} in all; combine {self.weighting.spec}; lr "
                           f"{config.learning_rate:g} ({config.phase}), heads {config.head_lr_of(config.phase):g}; "
                           f"kernel {kernel.backend(self.device)}")

    def _run_epoch(self, log: MetricsLog, progress: Progress, bar, stop: StopRequest) -> None:
        config, pos = self.config, self.position
        self._enter_phase(pos.epoch)
        plan = self.sampler.epoch_plan(pos.epoch)
        pending, window_start, window_examples = [], time.perf_counter(), 0
        while pos.index < len(plan) and pos.step < self.total_steps:
            lr = self.phase.scheduler.get_last_lr()[0]
            try:
                result = self.step(plan[pos.index], pos.step)
            except NonFiniteError as e:
                self._flush(log, pending, 0.0)
                pending = []
                log.write("nonfinite", step=pos.step + 1, message=str(e))
                if not config.skip_nonfinite:
                    raise NonFiniteError(f"{e}; training stopped. The last good checkpoint is {self.run_dir / LAST} "
                                         f"({self.checkpoints.last_saved()}); lower --lr, or pass --skip-nonfinite") from None
                pos.skipped += 1
                result = StepResult({}, 0, [])
                self.phase.scheduler.step()
            pos.step += 1
            pos.index += 1
            window_examples += result.examples
            pending.append((pos.step, pos.epoch - 1 + pos.index / self.steps_per_epoch, lr, result))
            at_end = pos.index == len(plan) or pos.step == self.total_steps
            if pos.step % config.log_every == 0 or at_end:
                speed = window_examples / max(1e-9, time.perf_counter() - window_start)
                shown = self._flush(log, pending, speed)
                progress.update(bar, completed=pos.step, epoch=f"{pos.epoch}/{config.epochs}", losses=shown,
                                speed=f"{speed:.0f} ex/s")
                self.lines.step(pos.step, pos.epoch, shown, speed)   # where no bar shows
                pending, window_start, window_examples = [], time.perf_counter(), 0
            if config.eval_every and pos.step % config.eval_every == 0 and not at_end:
                self._flush(log, pending, 0.0)
                pending = []
                self._evaluate_between(log)
            if config.save_every and pos.step % config.save_every == 0 and not at_end:
                self._flush(log, pending, 0.0)
                pending = []
                if self.dist.is_main:
                    self._save_last()
            if not at_end and self._stop_requested(stop):
                self._flush(log, pending, 0.0)
                self._stop(stop)
        self._end_epoch(log)
        if pos.step < self.total_steps and pos.epoch <= config.epochs and self._stop_requested(stop):
            self._stop(stop)  # last/ was saved at the epoch's end

    def _stop_requested(self, stop: StopRequest) -> bool:
        """Whether a SIGINT/SIGTERM arrived (on any rank: all ranks stop after the same step)."""
        return not self.dist.all_true(not stop.requested, self.device) if self.dist.enabled else stop.requested

    def _stop(self, stop: StopRequest) -> None:
        """Save last/ at this step boundary and stop with a resumable run."""
        if self.dist.is_main:
            self._save_last()
        self.dist.barrier()
        raise Interrupted(stop.signum or signal.SIGTERM,
                          f"saved {self.run_dir / 'last'} at step {self.position.step}; continue with "
                          f"`mtcli train --resume {self.run_dir}`")

    def _flush(self, log: MetricsLog, pending, speed: float) -> str:
        """Write buffered step records (one host sync per log interval) and return the loss summary."""
        last: dict[str, float] = {}
        for step, progress, lr, result in pending:
            values = {t: float(v) for t, v in result.losses.items()}
            for t, v in values.items():
                self.position.epoch_losses[t].append(v)
                last[t] = v
            record = {"step": step, "epoch_progress": round(progress, 5), "loss": values, "lr": lr,
                      "examples_per_s": round(speed, 2), **result.gradient_record()}
            log.write("step", **record)
        return "  ".join(f"{t} {v:.3f}" for t, v in sorted(last.items()) if ":" not in t)

    def _evaluate_between(self, log: MetricsLog) -> None:
        """A dev evaluation between epoch ends (--eval-every), on the main process."""
        if self.dist.is_main:
            self.dev.between(log, self.position)
        self.dist.barrier()

    def _end_epoch(self, log: MetricsLog) -> None:
        """The epoch's dev evaluation, best/ if it improved, the next epoch's phase, last/ (rank 0
        evaluates and saves; the others wait for it)."""
        pos = self.position
        self.weighting.end_epoch()  # every rank: e.g. DWA's epoch means move on
        results = None
        if self.dist.is_main:
            results, predictions = self.dev.epoch_end(log, pos)
            if results["overall"] is not None and results["overall"] > self.best_overall:
                self.best_overall = results["overall"]
                self.checkpoints.save_best(pos, results)
                self.dev.write_best(results, predictions, pos.epoch)
        pos.next_epoch()
        if pos.epoch <= self.config.epochs:
            self._enter_phase(pos.epoch)  # the saved optimizer state is the next phase's
        if self.dist.is_main:
            self._save_last(results)
        self.dist.barrier()

    def _save_last(self, results: dict | None = None) -> None:
        self.checkpoints.save_last(self.position, self.best_overall, self.phase, self.weighting, self.distiller, results)


def train(config: TrainConfig, console: Console | None = None) -> Path:
    return Trainer(config, console).run()


def resume(run_dir: str | Path, console: Console | None = None, settings: dict | None = None) -> Path:
    return Trainer.resume(run_dir, console, settings=settings).run()
