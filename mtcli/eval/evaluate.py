"""Evaluation: metrics from predictions, eval.json (with the error analysis of
mtcli.eval.analysis), CS224N test-output files, the Rich table.

Backend-neutral: the torch and onnxruntime paths each produce predictions per task
(probabilities or scores, in split order) and hand them here.
"""

from pathlib import Path

import numpy as np

from mtcli.core.data import Split
from mtcli.core.fileio import atomic_path, read_json_dict, refuse_overwrite_unless, write_json
from mtcli.core.metrics import headline, overall, predicted_labels, task_metrics
from mtcli.core.tasks import CORRELATIONS, Task, test_output_name
from mtcli.core.tsv import TsvWriter

EVAL_FORMAT = "mtcli-eval"


def written_by_mtcli(path: Path) -> bool:
    """Whether an existing evaluation output at `path` is mtcli's to replace: it lies in a run
    or export folder, or it carries mtcli's mark (eval.json's format, the PNGs' Software
    tag, the CS224N prediction header)."""
    from mtcli.inference.manifest import export_files
    from mtcli.core.paths import is_run_dir
    from mtcli.eval.plots import PNG_SOFTWARE

    if is_run_dir(path.parent) or export_files(path.parent) is not None:
        return True
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return False
    if path.suffix == ".json":
        return (read_json_dict(path) or {}).get("format") == EVAL_FORMAT
    if path.suffix == ".png":
        return b"Software\x00" + PNG_SOFTWARE.encode() in head
    return path.suffix == ".csv" and head.startswith(b"id,Predicted_")


def eval_files(tasks: dict[str, Task]) -> list[str]:
    """What `write_eval` writes for these tasks: eval.json and the analysis plots."""
    from mtcli.eval.analysis import plot_names

    return ["eval.json", *(name for task in tasks.values() for name in plot_names(task))]


def score_predictions(splits: dict[str, Split], predictions: dict[str, np.ndarray]) -> dict:
    """{'tasks': {task: metrics}, 'headline': {task: its declared metric}, 'overall': float | None}."""
    tasks = {name: splits[name].task for name in predictions}
    scores = {name: task_metrics(task, predictions[name], splits[name].labels) for name, task in tasks.items()}
    return {"tasks": scores, "headline": {name: headline(tasks[name], scores[name]) for name in scores},
            "overall": overall(tasks, scores)}


def write_test_predictions(splits: dict[str, Split], predictions: dict[str, np.ndarray], out_dir: str | Path) -> list[Path]:
    """Test-output files in the CS224N format: `{task}-test-output.csv`, header `id,<prediction header>`."""
    paths = {task: Path(out_dir) / test_output_name(task) for task in predictions}
    for path in paths.values():
        refuse_overwrite_unless(path, written_by_mtcli)
    for name, preds in predictions.items():
        task = splits[name].task
        values = predicted_labels(task, preds)
        with atomic_path(paths[name]) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = TsvWriter(fh, delimiter=",")
            writer.writerow(["id", task.test_header])
            writer.writerows([example.id, f"{value:.4f}" if task.is_regression else str(int(value))]
                             for example, value in zip(splits[name].examples, values))
    return list(paths.values())


def write_eval(results: dict, splits: dict[str, Split], predictions: dict[str, np.ndarray], out_dir: str | Path,
               **provenance) -> tuple[Path, dict]:
    """eval.json with the metrics and the error analysis, plus its plots (confusion matrices, scatters)."""
    from mtcli.eval.analysis import analyse, plot_analysis

    out_dir = Path(out_dir)
    for name in eval_files({name: split.task for name, split in splits.items()}):
        refuse_overwrite_unless(out_dir / name, written_by_mtcli)
    analysis = analyse(splits, predictions)
    plot_analysis(analysis, splits, predictions, out_dir)
    record = {"format": EVAL_FORMAT, **provenance, **results, "analysis": analysis}
    return write_json(out_dir / "eval.json", record), analysis


def scores_table(results: dict, tasks: dict[str, Task], title: str = "dev"):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("task", "metric", "value", "loss"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for name, metrics in results["tasks"].items():
        task = tasks[name]
        loss = f"{metrics['loss']:.4f}" if metrics.get("loss") is not None else ""
        shown = [task.metric, *(m for m in (CORRELATIONS if task.is_regression else ("accuracy", "f1"))
                                if m != task.metric)]
        for i, metric in enumerate(shown):
            table.add_row(name if i == 0 else "", metric + (" *" if i == 0 else ""), f"{metrics[metric]:.4f}",
                          loss if i == 0 else "")
    if results.get("overall") is not None:
        table.add_row("[bold]overall[/]", "mean of * (r as (r+1)/2)", f"[bold]{results['overall']:.4f}[/]", "")
    return table
