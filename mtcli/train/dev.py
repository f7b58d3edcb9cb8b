"""A run's dev evaluations, on the main process: every --eval-every steps (logged, handed to
`on_eval`: a sweep's pruner) and at each epoch's end (logged with the epoch's training loss,
shown as a table, handed to `on_eval`); and the best epoch's files: eval.json with its
analysis and plots, and the dev predictions `mtcli compare` resamples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from mtcli.eval.evaluate import score_predictions, scores_table, write_eval
from mtcli.model.predict import predict_texts
from mtcli.run.metrics_log import MetricsLog
from mtcli.run.predictions import write_dev_predictions
from mtcli.train.state import Position


class DevEvaluation:
    def __init__(self, model, tokenizer, splits: dict, batch_size: int, device: torch.device, run_dir: Path,
                 console: Console, on_eval=None):
        """`on_eval(step, results)`: called after every evaluation; what it raises stops the run."""
        self.model, self.tokenizer, self.splits, self.batch_size = model, tokenizer, splits, batch_size
        self.device, self.run_dir, self.console, self.on_eval = device, run_dir, console, on_eval

    def evaluate(self) -> tuple[dict, dict[str, np.ndarray]]:
        """The model's dev scores (each task's metrics and loss, the headline, the overall) and predictions."""
        predictions, losses = {}, {}
        for task, split in self.splits.items():
            predictions[task], losses[task] = predict_texts(
                self.model, self.tokenizer, task, [ex.texts for ex in split.examples],
                batch_size=self.batch_size, device=self.device, labels=split.labels)
        results = score_predictions(self.splits, predictions)
        for task, loss in losses.items():
            results["tasks"][task]["loss"] = loss
        return results, predictions

    def between(self, log: MetricsLog, position: Position) -> None:
        """An evaluation between epoch ends (--eval-every): logged, handed to on_eval."""
        results, _ = self.evaluate()
        log.write("eval", step=position.step, epoch=position.epoch, headline=results["headline"],
                  overall=results["overall"])
        self._hand_to_on_eval(log, position.step, results)

    def epoch_end(self, log: MetricsLog, position: Position) -> tuple[dict, dict[str, np.ndarray]]:
        """The evaluation at an epoch's end: logged with the epoch's mean training losses, shown, handed to on_eval."""
        results, predictions = self.evaluate()
        train_loss = {t: float(np.mean(v)) for t, v in position.epoch_losses.items() if v}
        log.write("epoch", epoch=position.epoch, step=position.step, train_loss=train_loss, dev=results["tasks"],
                  headline=results["headline"], overall=results["overall"])
        self.console.print(scores_table(results, self.model.tasks,
                                        title=f"dev after epoch {position.epoch} (step {position.step})"))
        self._hand_to_on_eval(log, position.step, results)
        return results, predictions

    def write_best(self, results: dict, predictions: dict[str, np.ndarray], epoch: int) -> None:
        """The best epoch's evaluation files and its dev predictions (for mtcli compare)."""
        write_eval(results, self.splits, predictions, self.run_dir, split="dev", checkpoint="best", epoch=epoch)
        write_dev_predictions(self.run_dir, self.splits, predictions, epoch)

    def _hand_to_on_eval(self, log: MetricsLog, step: int, results: dict) -> None:
        """on_eval may stop the run by raising (a pruner): the log says so, with its reason, so that
        `mtcli compare` can tell a pruned run from a killed one."""
        if self.on_eval is None:
            return
        try:
            self.on_eval(step, results)
        except Exception as e:
            log.write("stopped", step=step, reason=(str(e) or type(e).__name__)[:500])
            raise
