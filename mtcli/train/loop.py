"""The training loop: task samplers, per-task backward passes, gradient combination,
AdamW with warmup and linear decay, per-epoch dev evaluation, checkpoints and plots."""

import math
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mtcli.checkpoint import save_checkpoint
from mtcli.data import read_split
from mtcli.errors import UserError
from mtcli.evaluate import score_predictions, scores_table, write_eval
from mtcli.fileio import write_json
from mtcli.model import MinBert
from mtcli.model.multitask import HeadConfig, MultitaskModel
from mtcli.paths import resolve_model_dir
from mtcli.predict import label_tensor, predict_texts, torch_inputs
from mtcli.tasks import TASKS
from mtcli.tokenizer import Tokenizer
from mtcli.train.config import TrainConfig
from mtcli.train.gradients import TaskGradients
from mtcli.train.log import MetricsLog, read_metrics
from mtcli.train.plots import plot_curves
from mtcli.train.samplers import TaskSampler


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible to torch")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def build_optimizer(model: MultitaskModel, config: TrainConfig, total_steps: int):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.dim() < 2 or "norm" in name else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate)
    warmup = int(config.warmup * total_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


class Trainer:
    def __init__(self, config: TrainConfig, console: Console | None = None):
        self.config = config
        self.console = console or Console(stderr=True)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        self.device = resolve_device(config.device)
        model_dir = resolve_model_dir(config.model_dir)
        self.heads = HeadConfig(pooling=config.pooling, para_mode=config.para_mode, sts_mode=config.sts_mode,
                                dropout=config.dropout)
        self.tokenizer = Tokenizer.from_dir(model_dir, max_length=self.heads.max_length)
        encoder = MinBert.from_pretrained(model_dir, dropout=config.dropout)
        self.model = MultitaskModel(encoder, self.heads).to(self.device)
        if config.phase == "pretrain":
            self.model.encoder.requires_grad_(False)
        self.train_splits = {t: read_split(t, "train", config.data_dir, limit=config.limit) for t in TASKS}
        self.dev_splits = {t: read_split(t, "dev", config.data_dir, limit=config.limit) for t in TASKS}
        per_task = config.combine == "pcgrad"
        self.sampler = TaskSampler(config.sampler, {t: len(s) for t, s in self.train_splits.items()},
                                   batch_size=config.batch_size, epochs=config.epochs, seed=config.seed,
                                   upsample=config.upsample, slots_per_step=len(TASKS) if per_task else 1)
        self.steps_per_epoch = self.sampler.steps_per_epoch()
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.optimizer, self.scheduler = build_optimizer(self.model, config, self.total_steps)
        shared = self.model.shared_parameters()
        self.grads = TaskGradients(shared, len(TASKS)) if shared and (per_task or config.grad_stats) else None
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        name = config.name or f"{datetime.now():%Y%m%d-%H%M%S}-{config.sampler}-{config.combine}"
        self.run_dir = Path(config.out) / name
        self.best_overall = -math.inf

    # ------------------------------------------------------------------ one step

    def step(self, slots, step: int) -> tuple[dict[str, torch.Tensor], dict | None, int]:
        """Forward/backward every task of the step, combine, update. Returns losses, Gram stats, examples."""
        by_task: dict[str, list[np.ndarray]] = defaultdict(list)
        for slot in slots:
            by_task[slot.task].append(slot.indices)
        self.model.train()
        losses, examples = {}, 0
        for row, (task, parts) in enumerate(by_task.items()):
            split = self.train_splits[task]
            indices = np.concatenate(parts)
            inputs = torch_inputs(self.tokenizer, self.model, task, [split.examples[i].texts for i in indices], self.device)
            labels = label_tensor(task, [split.examples[i].label for i in indices], self.device)
            if self.grads is not None:
                self.grads.begin(row)
            with self.autocast:
                loss = self.model.loss(task, self.model(task, inputs), labels)
            (loss * self.config.weight(task)).backward()
            losses[task] = loss.detach()
            examples += len(indices)
        stats = None
        if self.grads is not None:
            stats = self.grads.finish(self.config.combine, seed=self.config.seed * 1_000_003 + step)
            stats["tasks"] = list(by_task)
        if self.config.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.grads is not None:
            self.grads.reset()
        return losses, stats, examples

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
        config, console = self.config, self.console
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise UserError(f"{self.run_dir}: run folder exists; pick another --name (or --resume it)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / "config.json", config.to_dict())
        log = MetricsLog(self.run_dir / "metrics.jsonl")
        parameters = sum(p.numel() for p in self.model.parameters())
        console.print(f"[bold]run[/] {self.run_dir}  device {self.device}  {parameters:,} parameters")
        console.print(f"[bold]sampler[/] {self.sampler.describe()}")
        console.print(f"[bold]steps[/] {self.total_steps} in all; combine {config.combine}; "
                      f"lr {config.learning_rate:g} ({config.phase}); pcgrad backend "
                      f"{self._pcgrad_backend()}")
        step, start = 0, time.perf_counter()
        progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[speed]}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        try:
            with progress:
                bar = progress.add_task("train", total=self.total_steps, epoch=1, losses="", speed="")
                for epoch in range(1, config.epochs + 1):
                    if step >= self.total_steps:
                        break
                    epoch_losses: dict[str, list[float]] = defaultdict(list)
                    pending, window_start, window_examples = [], time.perf_counter(), 0
                    for index, slots in enumerate(self.sampler.epoch_plan(epoch)):
                        if step >= self.total_steps:
                            break
                        lr = self.scheduler.get_last_lr()[0]
                        losses, stats, examples = self.step(slots, step)
                        step += 1
                        window_examples += examples
                        pending.append((step, epoch - 1 + (index + 1) / self.steps_per_epoch, lr, losses, stats))
                        if step % config.log_every == 0 or step == self.total_steps or index + 1 == self.steps_per_epoch:
                            speed = window_examples / max(1e-9, time.perf_counter() - window_start)
                            shown = self._flush(log, pending, epoch_losses, speed)
                            progress.update(bar, completed=step, epoch=f"{epoch}/{config.epochs}", losses=shown,
                                            speed=f"{speed:.0f} ex/s")
                            if not console.is_terminal and step % (10 * config.log_every) == 0:
                                console.print(f"step {step}/{self.total_steps}  {shown}  {speed:.0f} ex/s")
                            pending, window_start, window_examples = [], time.perf_counter(), 0
                    self._end_epoch(log, epoch, step, epoch_losses)
        finally:
            log.close()
        records = read_metrics(self.run_dir / "metrics.jsonl")
        plot_curves(records, list(TASKS), self.run_dir / "curves.png")
        console.print(f"[bold]done[/] {step} steps in {time.perf_counter() - start:.0f}s; best overall "
                      f"{self.best_overall:.4f}; checkpoints in {self.run_dir}/best and {self.run_dir}/last")
        return self.run_dir

    def _flush(self, log: MetricsLog, pending, epoch_losses, speed: float) -> str:
        """Write buffered step records (one host sync per log interval) and return the loss summary."""
        last: dict[str, float] = {}
        for step, progress, lr, losses, stats in pending:
            values = {t: float(v) for t, v in losses.items()}
            for t, v in values.items():
                epoch_losses[t].append(v)
                last[t] = v
            record = {"step": step, "epoch_progress": round(progress, 5), "loss": values,
                      "lr": lr, "examples_per_s": round(speed, 2)}
            if stats is not None:
                names = stats["tasks"]
                record["grad_cosine"] = {f"{names[i]}/{names[j]}": c for (i, j), c in stats["cosine"].items()}
                record["conflict_fraction"] = stats["conflict_fraction"]
                record["pcgrad_weights"] = dict(zip(names, stats["weights"]))
            log.write("step", **record)
        return "  ".join(f"{t} {v:.3f}" for t, v in sorted(last.items()))

    def _end_epoch(self, log: MetricsLog, epoch: int, step: int, epoch_losses) -> None:
        results, predictions = self.evaluate_dev()
        train_loss = {t: float(np.mean(v)) for t, v in epoch_losses.items()}
        log.write("epoch", epoch=epoch, step=step, train_loss=train_loss, dev=results["tasks"], overall=results["overall"])
        self.console.print(scores_table(results, title=f"dev after epoch {epoch} (step {step})"))
        info = {"run": str(self.run_dir), "epoch": epoch, "step": step, "dev": results, "train_config": self.config.to_dict()}
        save_checkpoint(self.model, self.tokenizer, self.run_dir / "last", info=info)
        if results["overall"] > self.best_overall:
            self.best_overall = results["overall"]
            save_checkpoint(self.model, self.tokenizer, self.run_dir / "best", info=info)
            write_eval(results, self.dev_splits, predictions, self.run_dir, split="dev", checkpoint="best", epoch=epoch)

    def _pcgrad_backend(self) -> str:
        from mtcli import pcgrad

        return pcgrad.backend(self.device)


def train(config: TrainConfig, console: Console | None = None) -> Path:
    return Trainer(config, console).run()
