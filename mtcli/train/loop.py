"""The run: epochs of the sampler's plan, one `TrainStep` per step (step.py), logging,
per-epoch dev evaluation, checkpoints, plots, and the non-finite policy.

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

from mtcli.core.data import notes, read_splits, read_unlabeled
from mtcli.core.encoding import row_lengths
from mtcli.core.errors import Interrupted, UserError
from mtcli.core.fileio import write_json
from mtcli.core.paths import resolve_model_dir
from mtcli.core.runlog import MetricsLog, NullLog, read_metrics
from mtcli.core.stopping import StopRequest, deferred_stop
from mtcli.core.tokenizer import Tokenizer
from mtcli.eval.evaluate import score_predictions, scores_table, write_eval
from mtcli.eval.plots import plot_curves
from mtcli.eval.predictions import write_dev_predictions
from mtcli.model import MinBert
from mtcli.model.checkpoint import META, read_meta, save_checkpoint
from mtcli.model.multitask import HeadConfig, MultitaskModel
from mtcli.model.predict import predict_texts, resolve_device
from mtcli.run.folder import BEST, CONFIG, LAST, METRICS, TEACHER_LABELS
from mtcli.run.provenance import describe_sources, write_record
from mtcli.train.config import TrainConfig
from mtcli.train.distillation import Annealing
from mtcli.train.distributed import Distributed
from mtcli.train.objectives import EmbeddingDistillation
from mtcli.train.progress import ProgressLines
from mtcli.train.recipe import recipe_of, write_recipe
from mtcli.train.tracking import TrackedLog, Trackers, check_mlflow_store
from mtcli.train.samplers import TaskSampler
from mtcli.train.state import Position, trainer_state
from mtcli.train.step import NonFiniteError, Phase, StepResult, TrainStep
from mtcli.train.teacher import label_units, sibling_labels, teachers_for, with_teacher, write_labels
from mtcli.train.units import make_units, subsample, unit_factors
from mtcli.weightings import kernel, make

__all__ = ["NonFiniteError", "Trainer", "train", "resume"]


class Trainer:
    def __init__(self, config: TrainConfig, console: Console | None = None, *, run_dir: Path | None = None,
                 init_dir: Path | None = None, on_eval=None):
        """`init_dir`: where the encoder and tokenizer start from (default: config.model_dir);
        a resumed run starts from its own last/ checkpoint, which is also a backbone folder.
        `on_eval(step, results)`: called after every dev evaluation (every --eval-every steps and
        at epoch ends), on the main process; what it raises stops the run (a sweep's pruner)."""
        self.config = config
        self.on_eval = on_eval
        device = resolve_device(config.device)
        self.dist = Distributed.from_env(use_cuda=device.type == "cuda")
        self.dist.check_batch(config.batch_size)
        self.device = torch.device("cuda", self.dist.local_rank) if device.type == "cuda" and self.dist.enabled else device
        # soft_wrap: a line stays one line in a log file (nohup, CI), whatever the width
        self.console = (console or Console(stderr=True, soft_wrap=True)) if self.dist.is_main else Console(quiet=True)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)
        model_dir = init_dir or resolve_model_dir(config.model_dir)
        self.tasks = config.load_tasks()
        self.heads = HeadConfig(pooling=config.pooling, dropout=config.dropout)
        self.tokenizer = Tokenizer.from_dir(model_dir, max_length=self.heads.max_length)
        encoder = MinBert.from_pretrained(model_dir, dropout=config.dropout)
        encoder.recompute_activations = config.activation_checkpointing
        self.model = MultitaskModel(encoder, self.heads, self.tasks).to(self.device)
        train_splits = read_splits(self.tasks, "train", limit=config.limit)
        self.dev_splits = read_splits(self.tasks, "dev", limit=config.limit)
        for note in notes(train_splits, self.dev_splits):
            self.console.print(f"[yellow]note[/] {note}", highlight=False)
        # distillation: each task's teacher, if any, and the unlabeled text only a teacher labels (teacher.py)
        self.teachers = teachers_for(config.teacher, self.tasks) if config.teacher else {}
        unlabeled = {name: read_unlabeled(task, limit=config.limit) for name, task in self.tasks.items()
                     if task.unlabeled and name in self.teachers}
        for name in (n for n, t in self.tasks.items() if t.unlabeled and n not in self.teachers):
            self.console.print(f"[yellow]note[/] task {name}: its unlabeled files are read only when a teacher "
                               f"labels them (--teacher)", highlight=False)
        # what the sampler draws: each task, or the tasks that share a file and a forward pass (units.py)
        self.units = {name: subsample(unit, config.train_fraction, config.seed)
                      for name, unit in make_units(self.tasks, train_splits, unlabeled).items()}
        lengths = {name: row_lengths(self.tokenizer, unit.encoding, unit.texts)
                   for name, unit in self.units.items()} if config.group_by_length else None
        self.sampler = TaskSampler(config.sampler, {name: len(unit) for name, unit in self.units.items()},
                                   batch_size=config.batch_size, epochs=config.epochs, seed=config.seed,
                                   upsample=unit_factors(self.units, config.upsample),
                                   slots_per_step=config.slots or len(self.units), lengths=lengths)
        self.steps_per_epoch = self.sampler.steps_per_epoch()
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.dist.broadcast_(list(self.model.state_dict().values()))  # every rank starts from rank 0's weights
        self.weighting = make(config.combine, num_tasks=len(self.tasks), seed=config.seed,
                              task_weights=[config.weight(t) for t in self.tasks])
        self.dist.check_batch(config.batch_size, self.weighting.draws)
        name = config.name or f"{datetime.now():%Y%m%d-%H%M%S}-{self.sampler.kind}-{self.weighting.name}"
        self.run_dir = Path(run_dir) if run_dir is not None else Path(config.out) / name
        self.teacher_labels, self.distiller = {}, None
        if self.teachers:   # each taught task's rows labelled by its teacher, once
            self.units = self._with_teachers(own=run_dir is not None, resuming=init_dir is not None)
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
        self.sources = describe_sources(config.tasks, self.tasks, unlabeled) if self.dist.is_main else None

    # ------------------------------------------------------------------ distillation

    def _with_teachers(self, own: bool, resuming: bool) -> dict:
        """The units with their teacher predictions: the run's own labels (`own`: its folder is
        given), a sibling run's in --out, or labelled now."""
        config, teachers = self.config, self.teachers
        path = self.run_dir / TEACHER_LABELS
        self.teacher_labels = label_units(self.units, self.tasks, teachers, device=str(self.device),
                                          console=self.console, own=path if own else None,
                                          siblings=sibling_labels(Path(config.out), self.run_dir), resuming=resuming,
                                          embeddings=config.distill_embeddings > 0)
        for task in self.tasks:
            teacher = teachers.get(task)
            self.console.print(f"[bold]teacher[/] {task}: " + (f"{teacher.path} ({teacher.kind})" if teacher else
                               "none (its gold labels alone)"), highlight=False)
        self.console.print(f"[bold]distillation[/] {Annealing.parse(config.teacher_annealing).describe()}, "
                           f"temperature {config.teacher_temperature:g}")
        return with_teacher(self.units, self.teacher_labels)

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

    # ------------------------------------------------------------------ evaluation

    def evaluate_dev(self) -> tuple[dict, dict[str, np.ndarray]]:
        predictions, losses = {}, {}
        for task, split in self.dev_splits.items():
            predictions[task], losses[task] = predict_texts(
                self.model, self.tokenizer, task, [ex.texts for ex in split.examples],
                batch_size=self.config.eval_batch_size, device=self.device, labels=split.labels)
        results = score_predictions(self.dev_splits, predictions)
        for task, loss in losses.items():
            results["tasks"][task]["loss"] = loss
        return results, predictions

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
        self._started = (time.perf_counter(), pos.step)
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
            saved = [str(self.run_dir / n) for n in (BEST, LAST) if (self.run_dir / n / META).is_file()]
            console.print(f"[bold]done[/] {pos.step} steps in {time.perf_counter() - start:.0f}s; best overall "
                          f"{self.best_overall:.4f}; checkpoints: {', '.join(saved) or 'none'}{skipped}")
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
                    raise NonFiniteError(f"{e}; training stopped. The last good checkpoint is {self.run_dir / 'last'} "
                                         f"({self._last_saved()}); lower --lr, or pass --skip-nonfinite") from None
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
        """A dev evaluation between epoch ends (--eval-every): logged, handed to on_eval."""
        if self.dist.is_main:
            results, _ = self.evaluate_dev()
            log.write("eval", step=self.position.step, epoch=self.position.epoch, headline=results["headline"],
                      overall=results["overall"])
            self._hand_to_on_eval(log, results)
        self.dist.barrier()

    def _hand_to_on_eval(self, log: MetricsLog, results: dict) -> None:
        """on_eval may stop the run by raising (a pruner): the log says so, with its reason, so that
        `mtcli compare` can tell a pruned run from a killed one."""
        if self.on_eval is None:
            return
        try:
            self.on_eval(self.position.step, results)
        except Exception as e:
            log.write("stopped", step=self.position.step, reason=(str(e) or type(e).__name__)[:500])
            raise

    def _end_epoch(self, log: MetricsLog) -> None:
        pos = self.position
        self.weighting.end_epoch()  # every rank: e.g. DWA's epoch means move on
        if not self.dist.is_main:  # rank 0 evaluates and saves; the others wait for it
            pos.next_epoch()
            if pos.epoch <= self.config.epochs:
                self._enter_phase(pos.epoch)
            self.dist.barrier()
            return
        results, predictions = self.evaluate_dev()
        train_loss = {t: float(np.mean(v)) for t, v in pos.epoch_losses.items() if v}
        log.write("epoch", epoch=pos.epoch, step=pos.step, train_loss=train_loss, dev=results["tasks"],
                  headline=results["headline"],
                  overall=results["overall"])
        self.console.print(scores_table(results, self.tasks, title=f"dev after epoch {pos.epoch} (step {pos.step})"))
        self._hand_to_on_eval(log, results)
        improved = results["overall"] is not None and results["overall"] > self.best_overall
        if improved:
            self.best_overall = results["overall"]
            save_checkpoint(self.model, self.tokenizer, self.run_dir / BEST, info=self._info(results))
            write_eval(results, self.dev_splits, predictions, self.run_dir, split="dev", checkpoint="best", epoch=pos.epoch)
            write_dev_predictions(self.run_dir, self.dev_splits, predictions, pos.epoch)   # for mtcli compare
        pos.next_epoch()
        if pos.epoch <= self.config.epochs:
            self._enter_phase(pos.epoch)  # the saved optimizer state is the next phase's
        self._save_last(results)
        self.dist.barrier()

    def _info(self, results: dict | None) -> dict:
        pos = self.position
        return {"run": str(self.run_dir), "epoch": pos.epoch, "step": pos.step, "dev": results,
                "train_config": self.config.to_dict(), "trained": self._trained()}

    def _trained(self) -> dict:
        """Where and how long this process trained (a model card's "training time and machine");
        a resumed run's figure covers the steps since its resume."""
        import platform

        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        started = getattr(self, "_started", None)
        return {"machine": platform.node(), "processor": platform.processor() or platform.machine(),
                "device": device, "threads": torch.get_num_threads(), "processes": self.dist.world,
                "seconds": round(time.perf_counter() - started[0], 1) if started else 0.0,
                "from_step": started[1] if started else self.position.step}

    def _save_last(self, results: dict | None = None) -> None:
        state = trainer_state(self.position, self.best_overall, self.phase, self.weighting, self.distiller)
        save_checkpoint(self.model, self.tokenizer, self.run_dir / LAST, info=self._info(results), trainer_state=state)

    def _last_saved(self) -> str:
        try:
            return f"step {read_meta(self.run_dir / 'last').get('step')}"
        except UserError:
            return "none saved yet"


def train(config: TrainConfig, console: Console | None = None) -> Path:
    return Trainer(config, console).run()


def resume(run_dir: str | Path, console: Console | None = None, settings: dict | None = None) -> Path:
    return Trainer.resume(run_dir, console, settings=settings).run()
