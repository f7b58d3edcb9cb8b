"""Evaluation: a checkpoint's or an export's predictions on a split, their metrics, eval.json
(with the error analysis of mtcli.eval.analysis), CS224N test-output files, the Rich table.

    from mtcli.eval.evaluate import evaluate_checkpoint, evaluate_onnx

    found = evaluate_checkpoint("runs/demo/best", split="dev")     # torch (imported when called)
    found = evaluate_onnx("export", split="dev")                   # onnxruntime, no torch
    found.results["overall"], found.save("runs/demo")              # eval.json and its plots

Both backends produce predictions per task (probabilities or scores, in split order) and hand
them here; `mtcli eval` is a thin wrapper over these functions. The module imports no torch.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtcli.core.data import Split
from mtcli.core.errors import UserError, excerpt
from mtcli.core.fileio import atomic_path, read_head, read_json_dict, refuse_overwrite_unless, write_json
from mtcli.core.metrics import headline, metric_names, overall, predicted_labels, task_metrics
from mtcli.core.tasks import Task, test_output_name
from mtcli.core.tsv import TsvWriter
from mtcli.run.folder import EVAL

EVAL_FORMAT = "mtcli-eval"


def written_by_mtcli(path: Path) -> bool:
    """Whether an existing evaluation output at `path` is mtcli's to replace: it lies in a run
    or export folder, or it carries mtcli's mark (eval.json's format, the PNGs' Software
    tag, the CS224N prediction header)."""
    from mtcli.core.paths import is_export_dir
    from mtcli.run.folder import is_run_dir
    from mtcli.eval.plots import PNG_SOFTWARE

    if is_run_dir(path.parent) or is_export_dir(path.parent):
        return True
    head = read_head(path)
    if head is None:
        return False
    if path.suffix == ".json":
        return (read_json_dict(path) or {}).get("format") == EVAL_FORMAT
    if path.suffix == ".png":
        return b"Software\x00" + PNG_SOFTWARE.encode() in head
    return path.suffix == ".csv" and head.startswith(b"id,Predicted_")


def eval_file(split: str) -> str:
    """eval.json for dev (the run's and the export's evaluation), eval-<split>.json otherwise."""
    return EVAL if split == "dev" else f"eval-{split}.json"


def eval_files(tasks: dict[str, Task], split: str = "dev") -> list[str]:
    """What `write_eval` writes for these tasks: the eval JSON and, for dev, the analysis plots."""
    from mtcli.eval.analysis import plot_names

    return [eval_file(split), *(name for task in tasks.values() for name in plot_names(task) if split == "dev")]


def labeled(splits: dict[str, Split], predictions: dict[str, np.ndarray]) -> tuple[dict[str, Split], dict]:
    """The rows that carry labels, per task that has any (a test file may have labels or not):
    what metrics can be computed on."""
    parts, kept = {}, {}
    for name, split in splits.items():
        rows = [i for i, example in enumerate(split.examples) if example.label is not None]
        if rows:
            parts[name] = Split(split.task, split.split, split.path, [split.examples[i] for i in rows])
            kept[name] = predictions[name][rows]
    return parts, kept


def score_predictions(splits: dict[str, Split], predictions: dict[str, np.ndarray]) -> dict:
    """{'tasks': {task: metrics}, 'headline': {task: its declared metric}, 'overall': float | None}."""
    tasks = {name: splits[name].task for name in predictions}
    scores = {name: task_metrics(task, predictions[name], splits[name].labels) for name, task in tasks.items()}
    return {"tasks": scores, "headline": {name: headline(tasks[name], scores[name]) for name in scores},
            "overall": overall(tasks, scores)}


def write_test_predictions(splits: dict[str, Split], predictions: dict[str, np.ndarray], out_dir: str | Path) -> list[Path]:
    """Test-output files in the CS224N format: `{task}-test-output.csv`, header `id,<prediction header>`;
    a class as its declared name, or its index where the task says `predictions = "index"`."""
    paths = {task: Path(out_dir) / test_output_name(task) for task in predictions}
    for path in paths.values():
        refuse_overwrite_unless(path, written_by_mtcli)
    for name, preds in predictions.items():
        task = splits[name].task
        values = predicted_labels(task, preds)
        with atomic_path(paths[name]) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = TsvWriter(fh, delimiter=",")
            writer.writerow(["id", task.test_header])
            writer.writerows([example.id, _prediction_text(task, value)]
                             for example, value in zip(splits[name].examples, values))
    return list(paths.values())


def _prediction_text(task: Task, value) -> str:
    if task.is_regression:
        return f"{value:.4f}"
    return str(int(value)) if task.predictions == "index" else task.labels[int(value)]


def write_eval(results: dict, splits: dict[str, Split], predictions: dict[str, np.ndarray], out_dir: str | Path,
               *, split: str = "dev", **provenance) -> tuple[Path, dict]:
    """The eval JSON (eval.json for dev, eval-<split>.json otherwise) with the metrics and the
    error analysis; for dev also its plots (confusion matrices, scatters)."""
    from mtcli.eval.analysis import analyse, plot_analysis

    out_dir = Path(out_dir)
    for name in eval_files({name: s.task for name, s in splits.items()}, split):
        refuse_overwrite_unless(out_dir / name, written_by_mtcli)
    analysis = analyse(splits, predictions)
    if split == "dev":
        plot_analysis(analysis, splits, predictions, out_dir)
    record = {"format": EVAL_FORMAT, "split": split, **provenance, **results, "analysis": analysis}
    return write_json(out_dir / eval_file(split), record), analysis


def scores_table(results: dict, tasks: dict[str, Task], title: str = "dev"):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("task", "metric", "value", "loss"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for name, metrics in results["tasks"].items():
        task = tasks[name]
        loss = f"{metrics['loss']:.4f}" if metrics.get("loss") is not None else ""
        for i, metric in enumerate(metric_names(task)):
            value = metrics.get(metric)
            table.add_row(name if i == 0 else "", metric + (" *" if i == 0 else ""),
                          "n/a" if value is None else f"{value:.4f}", loss if i == 0 else "")
    if results.get("overall") is not None:
        table.add_row("[bold]overall[/]", "mean of * (r as (r+1)/2)", f"[bold]{results['overall']:.4f}[/]", "")
    return table


# ---------------------------------------------------------------- evaluating a model

BATCH_SIZE = 64   # rows per forward pass (the scorer's, and the checkpoint's predictions')


@dataclass
class Evaluation:
    """What evaluating one model on one split found: the rows read, each task's predictions,
    and the metrics over the labelled rows (None when no task's rows carry labels: a test file
    without them). `backend` says what computed it (torch and the checkpoint's sha256, or
    onnxruntime)."""
    split: str
    source: Path
    backend: dict[str, str]
    splits: dict[str, Split]
    predictions: dict[str, np.ndarray]
    results: dict | None = field(init=False)   # the metrics over the labelled rows
    unlabeled: list[str] = field(init=False)   # tasks whose rows carry no labels (test files)
    analysis: dict = field(init=False, default_factory=dict)   # the error analysis, once saved (eval.json holds it)

    def __post_init__(self):
        self._labeled = labeled(self.splits, self.predictions)   # (splits, predictions) of the labelled rows
        parts, kept = self._labeled
        self.unlabeled = [name for name in self.splits if name not in parts]
        self.results = score_predictions(parts, kept) if parts else None

    def save(self, out_dir: str | Path) -> list[Path]:
        """Its files in `out_dir`: for test the CS224N prediction files, and for the tasks with
        labels (every task on dev) the eval JSON with its error analysis (and, for dev, plots)."""
        written = []
        if self.split == "test":
            written += write_test_predictions(self.splits, self.predictions, out_dir)
        if self.results is not None:
            parts, kept = self._labeled
            path, self.analysis = write_eval(self.results, parts, kept, out_dir, split=self.split,
                                             source=str(self.source), **self.backend)
            written.append(path)
        return written

    def tasks(self) -> dict[str, Task]:
        """The tasks the metrics cover."""
        return {name: self.splits[name].task for name in (self.results or {}).get("tasks", {})}


def evaluate_checkpoint(checkpoint: str | Path | None = None, *, split: str = "dev", data_dir=None,
                        task_file=None, limit: int | None = None, batch_size: int = BATCH_SIZE,
                        device: str = "auto") -> Evaluation:
    """A checkpoint (default: the latest run's best/) on `split`, through torch. The data is
    located from `data_dir` or `task_file`, else where the checkpoint's run read it
    (mtcli.model.checkpoint.checkpoint_data)."""
    from mtcli.core.data import read_splits
    from mtcli.model.checkpoint import checkpoint_data, checkpoint_hash, latest_checkpoint, load_checkpoint
    from mtcli.model.predict import predict_texts, resolve_device

    _check_split(split)
    checkpoint = Path(checkpoint) if checkpoint is not None else latest_checkpoint()
    target = resolve_device(device)
    model, tokenizer, _ = load_checkpoint(checkpoint, device=target)
    located = checkpoint_data(checkpoint, model.tasks, task_file=task_file, data_dir=data_dir, splits=(split,))
    splits = read_splits(located, split, limit=limit)
    predictions = {task: predict_texts(model, tokenizer, task, [ex.texts for ex in data.examples],
                                       batch_size=batch_size, device=target)[0]
                   for task, data in splits.items()}
    return Evaluation(split, checkpoint, {"backend": "torch", "checkpoint_sha256": checkpoint_hash(checkpoint)},
                      splits, predictions)


def evaluate_onnx(model_dir: str | Path = "export", *, split: str = "dev", data_dir=None, task_file=None,
                  limit: int | None = None, quantized: bool = False, providers: Sequence[str] = ("cuda", "cpu"),
                  batch_size: int = BATCH_SIZE, tasks: dict[str, Task] | None = None) -> Evaluation:
    """An export on `split`, through onnxruntime (no torch): the same metrics as
    evaluate_checkpoint's. The data is located from `data_dir` or `task_file`
    (mtcli.core.data.locate_data), or given as located `tasks`."""
    from mtcli.core.data import locate_data, read_splits
    from mtcli.inference.scorer import Scorer

    _check_split(split)
    scorer = Scorer(model_dir, int8=quantized, providers=providers)
    if tasks is None:
        tasks = locate_data(scorer.tasks, model_dir, task_file=task_file, data_dir=data_dir)
    splits = read_splits(tasks, split, limit=limit)
    predictions = {task: scorer.score(task, [ex.texts for ex in data.examples], batch_size=batch_size)
                   for task, data in splits.items()}
    return Evaluation(split, Path(model_dir), {"backend": "onnxruntime" + (" int8" if quantized else "")}, splits,
                      predictions)


def _check_split(split: str) -> None:
    if split not in ("dev", "test"):
        raise UserError(f"--split {excerpt(split)} is not one of dev, test")
