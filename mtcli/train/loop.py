"""The run: its parts built (build.py), then epochs of the sampler's plan, one `TrainStep` per
step (step.py) in the epoch's phase (phases.py), each step's record logged (progress.py), the
non-finite policy, signals at a step boundary; at each epoch's end the dev evaluation (dev.py)
and the checkpoints (checkpoints.py).

A run can be killed at any point and continued with `--resume RUN_DIR` (resumption.py): `last/`
holds the weights together with the optimizer, scheduler, RNG states, the weighting's state
and the position in the sampler's plan (state.py), and the continued run is bit-identical
(on CPU) to one that was never interrupted.
"""

import random
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mtcli.core.errors import Interrupted
from mtcli.core.stopping import StopRequest, deferred_stop
from mtcli.eval.plots import plot_curves
from mtcli.model.predict import resolve_device
from mtcli.run.folder import LAST, METRICS
from mtcli.run.metrics_log import MetricsLog, NullLog, read_metrics
from mtcli.run.provenance import describe_sources
from mtcli.train.build import build
from mtcli.train.checkpoints import Checkpoints, open_run_folder
from mtcli.train.config import TrainConfig
from mtcli.train.dev import DevEvaluation
from mtcli.train.distributed import Distributed
from mtcli.train.objectives import EmbeddingDistillation
from mtcli.train.phases import Phases
from mtcli.train.progress import ProgressLines, StepRecords, announce
from mtcli.train.recipe import recipe_of
from mtcli.train.state import Position
from mtcli.train.step import NonFiniteError, Phase, StepResult, TrainStep
from mtcli.train.teacher import teach
from mtcli.train.tracking import TrackedLog, Trackers, check_mlflow_store

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
                                                    resuming=init_dir is not None, dist=self.dist)
        if config.distill_embeddings > 0:
            widths = {l.embeddings.shape[-1] for l in self.teacher_labels.values() if l.embeddings is not None}
            self.distiller = EmbeddingDistillation(self.model.encoder.hidden_size, widths).to(self.device)
            self.dist.broadcast_(list(self.distiller.state_dict().values()))
        self.train_step = TrainStep(self.model, self.tokenizer, config, self.units, self.weighting,
                                    self.dist, self.device, self.total_steps, self.distiller)
        self.phases = Phases(self.model, config, self.weighting, self.steps_per_epoch, self.total_steps,
                             list(self.distiller.parameters()) if self.distiller is not None else [])
        self.phases.enter(1)
        self.position = Position()
        self.restart = False  # resuming a run that saved no checkpoint: it starts again in its folder
        self.lines = ProgressLines(self.console, self.total_steps, config.epochs, config.progress_every)
        self.sources = describe_sources(config.tasks, self.tasks, parts.unlabeled) if self.dist.is_main else None
        self.dev = DevEvaluation(self.model, self.tokenizer, parts.dev_splits, config.eval_batch_size, self.device,
                                 self.run_dir, self.console, on_eval)
        self.checkpoints = Checkpoints(self.run_dir, config, self.model, self.tokenizer, self.device, self.dist.world,
                                       self.phases, self.weighting, self.distiller)

    @property
    def phase(self) -> Phase:
        """What trains now: the current phase's optimizer, schedule and gradient buffer."""
        return self.phases.current

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
        open_run_folder(self.run_dir, config, self.sources, self.teacher_labels, restart=self.restart,
                        new=pos.step == 0, dist=self.dist, device=self.device)
        announce(self)
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
                          f"{self.checkpoints.best_overall:.4f}; checkpoints: {', '.join(self.checkpoints.saved()) or 'none'}{skipped}")
        if stop.requested:   # it came after the last step's check (in the final evaluation or save): still a stop
            raise Interrupted(stop.signum, f"the run had finished: {self.run_dir}")
        return self.run_dir

    def _run_epoch(self, log: MetricsLog, progress: Progress, bar, stop: StopRequest) -> None:
        config, pos, main = self.config, self.position, self.dist.is_main
        self.phases.enter(pos.epoch)
        plan = self.sampler.epoch_plan(pos.epoch)
        records = StepRecords(log, pos, self.steps_per_epoch)
        while pos.index < len(plan) and pos.step < self.total_steps:
            lr = self.phase.scheduler.get_last_lr()[0]
            try:
                result = self.step(plan[pos.index], pos.step)
            except NonFiniteError as e:
                records.flush()
                log.write("nonfinite", step=pos.step + 1, message=str(e))
                if not config.skip_nonfinite:
                    raise NonFiniteError(f"{e}; training stopped. The last good checkpoint is {self.run_dir / LAST} "
                                         f"({self.checkpoints.last_saved()}); lower --lr, or pass --skip-nonfinite") from None
                pos.skipped += 1
                result = StepResult({}, 0, [])
                self.phase.scheduler.step()
            pos.step += 1
            pos.index += 1
            records.add(lr, result)
            at_end = pos.index == len(plan) or pos.step == self.total_steps
            if pos.step % config.log_every == 0 or at_end:
                shown, speed = records.interval_end()
                progress.update(bar, completed=pos.step, epoch=f"{pos.epoch}/{config.epochs}", losses=shown,
                                speed=f"{speed:.0f} ex/s")
                self.lines.step(pos.step, pos.epoch, shown, speed)   # where no bar shows
            if config.eval_every and pos.step % config.eval_every == 0 and not at_end:
                records.flush()
                if main:
                    self.dev.between(log, pos)
                self.dist.barrier()
            if config.save_every and pos.step % config.save_every == 0 and not at_end:
                records.flush()
                if main:
                    self.checkpoints.save_last(pos)
            if not at_end and self.dist.any_true(stop.requested, self.device):   # a signal on any rank: all stop here
                records.flush()
                self.checkpoints.stop(pos, stop.signum, self.dist)
        # the epoch's end: its dev evaluation, best/ if it improved, the next epoch's phase, last/
        # (the main process evaluates and saves; the others wait for it)
        self.weighting.end_epoch()  # every rank: e.g. DWA's epoch means move on
        results = None
        if main:
            results, predictions = self.dev.epoch_end(log, pos)
            if self.checkpoints.save_if_best(pos, results):
                self.dev.write_best(results, predictions, pos.epoch)
        pos.next_epoch()
        if pos.epoch <= config.epochs:
            self.phases.enter(pos.epoch)  # the saved optimizer state is the next phase's
        if main:
            self.checkpoints.save_last(pos, results)
        self.dist.barrier()
        if pos.step < self.total_steps and pos.epoch <= config.epochs and self.dist.any_true(stop.requested, self.device):
            self.checkpoints.stop(pos, stop.signum, self.dist)   # last/ was saved at the epoch's end


def train(config: TrainConfig, console: Console | None = None) -> Path:
    return Trainer(config, console).run()


def resume(run_dir: str | Path, console: Console | None = None, settings: dict | None = None) -> Path:
    return Trainer.resume(run_dir, console, settings=settings).run()
