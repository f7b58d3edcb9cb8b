"""Evaluation: metrics from predictions, eval.json (with the error analysis of
mtcli.eval.analysis), CS224N test-output files, the Rich table.

Backend-neutral: the torch and onnxruntime paths each produce predictions per task
(probabilities or scores, in split order) and hand them here.
"""

from pathlib import Path

import numpy as np

from mtcli.core.data import Split
from mtcli.core.fileio import atomic_path, read_json_dict, refuse_overwrite_unless, special_file, write_json
from mtcli.core.metrics import headline, metric_names, overall, predicted_labels, task_metrics
from mtcli.core.tasks import Task, test_output_name
from mtcli.core.tsv import TsvWriter

EVAL_FORMAT = "mtcli-eval"


def written_by_mtcli(path: Path) -> bool:
    """Whether an existing evaluation output at `path` is mtcli's to replace: it lies in a run
    or export folder, or it carries mtcli's mark (eval.json's format, the PNGs' Software
    tag, the CS224N prediction header)."""
    from mtcli.core.paths import is_export_dir, is_run_dir
    from mtcli.eval.plots import PNG_SOFTWARE

    if is_run_dir(path.parent) or is_export_dir(path.parent):
        return True
    if special_file(path):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    if path.suffix == ".json":
        return (read_json_dict(path) or {}).get("format") == EVAL_FORMAT
    if path.suffix == ".png":
        return b"Software\x00" + PNG_SOFTWARE.encode() in head
    return path.suffix == ".csv" and head.startswith(b"id,Predicted_")


def eval_file(split: str) -> str:
    """eval.json for dev (the run's and the export's evaluation), eval-<split>.json otherwise."""
    return "eval.json" if split == "dev" else f"eval-{split}.json"


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
