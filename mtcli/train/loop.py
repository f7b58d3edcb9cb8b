"""The training loop: task samplers, per-task backward passes, gradient combination,
AdamW with warmup and linear decay, per-epoch dev evaluation, checkpoints and plots.

A run can be killed at any point and continued with `--resume RUN_DIR`: `last/`
holds the weights together with the optimizer, scheduler, RNG states and the
position in the sampler's plan, and the continued run is bit-identical (on CPU)
to one that was never interrupted.
"""

import contextlib
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mtcli.model.checkpoint import META, TRAINER_STATE, model_state_from, read_meta, save_checkpoint
from mtcli.core.data import read_splits, subsample
from mtcli.core.encoding import row_lengths
from mtcli.core.errors import UserError
from mtcli.eval.evaluate import score_predictions, scores_table, write_eval
from mtcli.core.fileio import recover_dir, write_json, write_text
from mtcli.model import MinBert
from mtcli.model.multitask import HeadConfig, MultitaskModel
from mtcli.core.paths import resolve_model_dir
from mtcli.model.predict import predict_texts, resolve_device, torch_inputs
from mtcli.core.tokenizer import Tokenizer
from mtcli.train.config import TrainConfig
from mtcli.train.distributed import Distributed
from mtcli.train.gradients import TaskGradients
from mtcli.core.runlog import MetricsLog, NullLog, read_metrics
from mtcli.train.objectives import auxiliary_losses
from mtcli.eval.plots import plot_curves
from mtcli.train.samplers import TaskSampler


class NonFiniteError(UserError):
    """A loss or gradient became NaN/inf."""


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


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Position:
    """Where a run is: optimizer steps done, and the epoch (1-based) and step within it."""
    step: int = 0
    epoch: int = 1
    index: int = 0
    epoch_losses: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    skipped: int = 0


class Trainer:
    def __init__(self, config: TrainConfig, console: Console | None = None, *, run_dir: Path | None = None):
        self.config = config
        device = resolve_device(config.device)
        self.dist = Distributed.from_env(use_cuda=device.type == "cuda")
        self.dist.check_batch(config.batch_size)
        self.device = torch.device("cuda", self.dist.local_rank) if device.type == "cuda" and self.dist.enabled else device
        self.console = (console or Console(stderr=True)) if self.dist.is_main else Console(quiet=True)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)
        model_dir = resolve_model_dir(config.model_dir)
        self.tasks = config.load_tasks()
        self.heads = HeadConfig(pooling=config.pooling, dropout=config.dropout)
        self.tokenizer = Tokenizer.from_dir(model_dir, max_length=self.heads.max_length)
        encoder = MinBert.from_pretrained(model_dir, dropout=config.dropout)
        self.model = MultitaskModel(encoder, self.heads, self.tasks).to(self.device)
        self.train_splits = {name: subsample(split, config.train_fraction, config.seed)
                             for name, split in read_splits(self.tasks, "train", limit=config.limit).items()}
        self.dev_splits = read_splits(self.tasks, "dev", limit=config.limit)
        lengths = {t: row_lengths(self.tokenizer, self.model.encoding(t), [ex.texts for ex in s.examples])
                   for t, s in self.train_splits.items()} if config.group_by_length else None
        self.sampler = TaskSampler(config.sampler, {t: len(s) for t, s in self.train_splits.items()},
                                   batch_size=config.batch_size, epochs=config.epochs, seed=config.seed,
                                   upsample=config.upsample, slots_per_step=config.slots or len(self.tasks),
                                   lengths=lengths)
        self.steps_per_epoch = self.sampler.steps_per_epoch()
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.phase = self.optimizer = self.scheduler = self.grads = None
        self.forward_model = self.model
        self._enter_phase(1)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        name = config.name or f"{datetime.now():%Y%m%d-%H%M%S}-{config.sampler}-{config.combine}"
        self.run_dir = Path(run_dir) if run_dir is not None else Path(config.out) / name
        self.best_overall = -math.inf
        self.position = Position()

    # ------------------------------------------------------------------ phases

    def _enter_phase(self, epoch: int) -> None:
        """Freeze or unfreeze the encoder for `epoch`'s phase; a new phase gets a fresh
        optimizer and schedule over its own steps (head pretraining, then fine-tuning)."""
        config = self.config
        phase = config.phase_of(epoch)
        if phase == self.phase:
            return
        self.phase = phase
        self.model.encoder.requires_grad_(phase == "finetune")
        start = (epoch - 1) * self.steps_per_epoch
        end = config.pretrain_epochs * self.steps_per_epoch if phase == "pretrain" and config.phase != "pretrain" \
            else self.total_steps
        span = max(1, min(end, self.total_steps) - start)
        self.optimizer, self.scheduler = build_optimizer(self.model, config, span, phase)
        shared = self.model.shared_parameters()
        wanted = bool(shared) and (config.combine == "pcgrad" or config.grad_stats)
        self.grads = TaskGradients(shared, len(self.tasks)) if wanted else None
        if self.dist.enabled:  # DDP hooks the parameters that train in this phase
            from torch.nn.parallel import DistributedDataParallel

            self.forward_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)  # a step need not use every head

    # ------------------------------------------------------------------ resume

    @classmethod
    def resume(cls, run_dir: str | Path, console: Console | None = None) -> "Trainer":
        """Rebuild a run from runs/<name>/config.json and continue from its last/ checkpoint."""
        import json

        run_dir = Path(run_dir)
        last = recover_dir(run_dir / "last")
        if not (run_dir / "config.json").is_file():
            raise UserError(f"{run_dir}: not a run folder (no config.json); pass the folder `mtcli train` wrote")
        if not (last / TRAINER_STATE).is_file():
            raise UserError(f"{last}: no resumable checkpoint (no {TRAINER_STATE}); the run saved none yet: start it again")
        values = json.loads((run_dir / "config.json").read_text())
        values.pop("learning_rate", None)
        try:
            config = TrainConfig(**values)
        except TypeError:  # fields this version does not have, or lacks fields it needs
            raise UserError(f"{run_dir / 'config.json'}: written by another mtcli version; start the run again "
                            f"with this one") from None
        trainer = cls(config, console, run_dir=run_dir)
        read_meta(last)
        trainer.model.load_state_dict(model_state_from(last))
        try:
            state = torch.load(last / TRAINER_STATE, map_location="cpu", weights_only=False)
        except Exception as e:  # torch.load raises several types on corrupt files
            raise UserError(f"{last / TRAINER_STATE}: corrupt ({type(e).__name__}); resume from an earlier copy") from None
        trainer._enter_phase(state["position"]["epoch"])  # the optimizer's parameter groups depend on the phase
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.best_overall = state["best_overall"]
        p = state["position"]
        trainer.position = Position(p["step"], p["epoch"], p["index"], defaultdict(list, p["epoch_losses"]), p["skipped"])
        set_rng_state(state["rng"])
        trainer._truncate_log(trainer.position.step)
        return trainer

    def _truncate_log(self, step: int) -> None:
        """Drop metrics written after the checkpoint the run continues from."""
        path = self.run_dir / "metrics.jsonl"
        if path.is_file():
            kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
            import json

            write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    # ------------------------------------------------------------------ one step

    def step(self, slots, step: int) -> tuple[dict[str, torch.Tensor], dict | None, int]:
        """Forward/backward every task of the step, combine, update. Returns losses, Gram stats, examples.

        Raises NonFiniteError (with nothing applied) if a loss or the gradient is not finite."""
        by_task: dict[str, list[np.ndarray]] = defaultdict(list)
        for slot in slots:
            by_task[slot.task].append(slot.indices)
        self.model.train()
        # PCGrad reduces the task gradients itself, after all backward passes: no DDP all-reduce in them.
        manual_sync = self.dist.enabled and self.config.combine == "pcgrad"
        try:
            with self.forward_model.no_sync() if manual_sync else contextlib.nullcontext():
                losses, examples = self._backward_tasks(by_task, step)
            if manual_sync:
                rows = [self.grads.used_rows()] if self.grads is not None else []
                heads = [p.grad for p in self.model.heads.parameters() if p.grad is not None]
                self.dist.average_(rows + heads)  # one collective: every rank now holds the same gradients
            stats = None
            if self.grads is not None:
                stats = self.grads.finish(self.config.combine, seed=self.config.seed * 1_000_003 + step)
                stats["tasks"] = list(by_task)
            limit = self.config.clip if self.config.clip > 0 else math.inf
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit)
            if not torch.isfinite(norm):
                raise NonFiniteError(f"step {step + 1}: the gradient norm is {norm.item()} (tasks {', '.join(by_task)})")
            self.optimizer.step()
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            if self.grads is not None:
                self.grads.reset()
        self.scheduler.step()
        return losses, stats, examples

    def _backward_tasks(self, by_task: dict[str, list[np.ndarray]], step: int) -> tuple[dict, int]:
        """One forward and backward pass per task of the step (this rank's share of each batch)."""
        losses, examples = {}, 0
        for row, (task, parts) in enumerate(by_task.items()):
            split = self.train_splits[task]
            rows = [split.examples[i] for i in self.dist.shard(np.concatenate(parts))]
            texts, labels = [ex.texts for ex in rows], [ex.label for ex in rows]
            inputs = torch_inputs(self.tokenizer, self.model, task, texts, self.device)
            if self.grads is not None:
                self.grads.begin(row)
            with self.autocast:
                loss = self.model.loss(task, self.forward_model(task, inputs), self.model.label_tensor(task, labels, self.device))
                extra = auxiliary_losses(self.config, self.model, self.tokenizer, task, texts, labels, self.device) \
                    if self.phase == "finetune" else {}
            total = loss + sum(extra.values())
            if not self.dist.all_true(bool(torch.isfinite(total)), self.device):
                bad = next((f" {n}" for n, v in [("", loss), *extra.items()] if not torch.isfinite(v)), "")
                raise NonFiniteError(f"step {step + 1}: {task}{bad.rstrip()} loss is {total.item()}")
            if total.requires_grad:  # not when nothing trains for the task: a cosine head on a frozen encoder
                (total * self.config.weight(task)).backward()
            losses[task] = loss.detach()
            losses.update({f"{task}:{name}": value.detach() for name, value in extra.items()})
            examples += len(rows) * self.dist.world
        return losses, examples

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
        if pos.step == 0:
            exists = self.run_dir.exists() and any(self.run_dir.iterdir())
            if not self.dist.all_true(not exists, self.device):
                raise UserError(f"{self.run_dir}: run folder exists; pick another --name (or --resume it)")
            self.dist.barrier()
            if main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                write_json(self.run_dir / "config.json", config.to_dict())
        self._announce()
        log = MetricsLog(self.run_dir / "metrics.jsonl") if main else NullLog()
        start = time.perf_counter()
        progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[speed]}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        try:
            with progress:
                bar = progress.add_task("train", total=self.total_steps, completed=pos.step, epoch=pos.epoch,
                                        losses="", speed="")
                while pos.epoch <= config.epochs and pos.step < self.total_steps:
                    self._run_epoch(log, progress, bar)
            if self.dist.enabled:  # every rank applied the same updates: check it, and say so
                divergence = self.dist.max_parameter_divergence(list(self.model.parameters()))
                log.write("ddp", world=self.dist.world, max_parameter_divergence=divergence)
                console.print(f"[bold]ddp[/] {self.dist.world} processes; parameters identical across ranks: "
                              f"{'yes' if divergence == 0 else f'no (max |diff| {divergence:.3g})'}")
        finally:
            log.close()
            self.dist.close()
        if not main:
            return self.run_dir
        plot_curves(read_metrics(self.run_dir / "metrics.jsonl"), list(self.tasks), self.run_dir / "curves.png")
        skipped = f"; {pos.skipped} non-finite steps skipped" if pos.skipped else ""
        saved = [str(self.run_dir / n) for n in ("best", "last") if (self.run_dir / n / META).is_file()]
        console.print(f"[bold]done[/] {pos.step} steps in {time.perf_counter() - start:.0f}s; best overall "
                      f"{self.best_overall:.4f}; checkpoints: {', '.join(saved) or 'none'}{skipped}")
        return self.run_dir

    def _announce(self) -> None:
        from mtcli import pcgrad

        config, pos = self.config, self.position
        parameters = sum(p.numel() for p in self.model.parameters())
        resumed = f"  (resumed at step {pos.step}, epoch {pos.epoch})" if pos.step else ""
        ranks = f"  x {self.dist.world} processes" if self.dist.enabled else ""
        self.console.print(f"[bold]run[/] {self.run_dir}  device {self.device}{ranks}  {parameters:,} parameters{resumed}")
        self.console.print(f"[bold]sampler[/] {self.sampler.describe()}")
        self.console.print(f"[bold]steps[/] {self.total_steps} in all; combine {config.combine}; lr "
                           f"{config.learning_rate:g} ({config.phase}), heads {config.head_lr_of(config.phase):g}; "
                           f"pcgrad backend {pcgrad.backend(self.device)}")

    def _run_epoch(self, log: MetricsLog, progress: Progress, bar) -> None:
        config, pos = self.config, self.position
        self._enter_phase(pos.epoch)
        plan = self.sampler.epoch_plan(pos.epoch)
        pending, window_start, window_examples = [], time.perf_counter(), 0
        while pos.index < len(plan) and pos.step < self.total_steps:
            lr = self.scheduler.get_last_lr()[0]
            try:
                losses, stats, examples = self.step(plan[pos.index], pos.step)
            except NonFiniteError as e:
                self._flush(log, pending, 0.0)
                pending = []
                log.write("nonfinite", step=pos.step + 1, message=str(e))
                if not config.skip_nonfinite:
                    raise NonFiniteError(f"{e}; training stopped. The last good checkpoint is {self.run_dir / 'last'} "
                                         f"({self._last_saved()}); lower --lr, or pass --skip-nonfinite") from None
                pos.skipped += 1
                losses, stats, examples = {}, None, 0
                self.scheduler.step()
            pos.step += 1
            pos.index += 1
            window_examples += examples
            pending.append((pos.step, pos.epoch - 1 + pos.index / self.steps_per_epoch, lr, losses, stats))
            at_end = pos.index == len(plan) or pos.step == self.total_steps
            if pos.step % config.log_every == 0 or at_end:
                speed = window_examples / max(1e-9, time.perf_counter() - window_start)
                shown = self._flush(log, pending, speed)
                progress.update(bar, completed=pos.step, epoch=f"{pos.epoch}/{config.epochs}", losses=shown,
                                speed=f"{speed:.0f} ex/s")
                if not self.console.is_terminal and pos.step % (10 * config.log_every) == 0:
                    self.console.print(f"step {pos.step}/{self.total_steps}  {shown}  {speed:.0f} ex/s")
                pending, window_start, window_examples = [], time.perf_counter(), 0
            if config.save_every and pos.step % config.save_every == 0 and not at_end:
                self._flush(log, pending, 0.0)
                pending = []
                if self.dist.is_main:
                    self._save_last()
        self._end_epoch(log)

    def _flush(self, log: MetricsLog, pending, speed: float) -> str:
        """Write buffered step records (one host sync per log interval) and return the loss summary."""
        last: dict[str, float] = {}
        for step, progress, lr, losses, stats in pending:
            values = {t: float(v) for t, v in losses.items()}
            for t, v in values.items():
                self.position.epoch_losses[t].append(v)
                last[t] = v
            record = {"step": step, "epoch_progress": round(progress, 5), "loss": values, "lr": lr,
                      "examples_per_s": round(speed, 2)}
            if stats is not None:
                names = stats["tasks"]
                record["grad_cosine"] = {f"{names[i]}/{names[j]}": c for (i, j), c in stats["cosine"].items()}
                record["conflict_fraction"] = stats["conflict_fraction"]
                record["pcgrad_weights"] = dict(zip(names, stats["weights"]))
            log.write("step", **record)
        return "  ".join(f"{t} {v:.3f}" for t, v in sorted(last.items()) if ":" not in t)

    def _end_epoch(self, log: MetricsLog) -> None:
        pos = self.position
        if not self.dist.is_main:  # rank 0 evaluates and saves; the others wait for it
            pos.epoch, pos.index, pos.epoch_losses = pos.epoch + 1, 0, defaultdict(list)
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
        improved = results["overall"] > self.best_overall
        if improved:
            self.best_overall = results["overall"]
            save_checkpoint(self.model, self.tokenizer, self.run_dir / "best", info=self._info(results))
            write_eval(results, self.dev_splits, predictions, self.run_dir, split="dev", checkpoint="best", epoch=pos.epoch)
        pos.epoch, pos.index, pos.epoch_losses = pos.epoch + 1, 0, defaultdict(list)
        if pos.epoch <= self.config.epochs:
            self._enter_phase(pos.epoch)  # the saved optimizer state is the next phase's
        self._save_last(results)
        self.dist.barrier()

    def _info(self, results: dict | None) -> dict:
        pos = self.position
        return {"run": str(self.run_dir), "epoch": pos.epoch, "step": pos.step, "dev": results,
                "train_config": self.config.to_dict()}

    def _save_last(self, results: dict | None = None) -> None:
        pos = self.position
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "best_overall": self.best_overall, "rng": rng_state(),
                 "position": {"step": pos.step, "epoch": pos.epoch, "index": pos.index,
                              "epoch_losses": dict(pos.epoch_losses), "skipped": pos.skipped}}
        save_checkpoint(self.model, self.tokenizer, self.run_dir / "last", info=self._info(results), trainer_state=state)

    def _last_saved(self) -> str:
        try:
            return f"step {read_meta(self.run_dir / 'last').get('step')}"
        except UserError:
            return "none saved yet"


def train(config: TrainConfig, console: Console | None = None) -> Path:
    return Trainer(config, console).run()


def resume(run_dir: str | Path, console: Console | None = None) -> Path:
    return Trainer.resume(run_dir, console).run()
