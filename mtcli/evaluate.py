"""Evaluation: metrics from predictions, eval.json (with the error analysis of
mtcli.analysis), CS224N test-output files, the Rich table.

Backend-neutral: the torch and onnxruntime paths each produce predictions per task
(probabilities or scores, in split order) and hand them here.
"""

from pathlib import Path

import numpy as np

from mtcli.data import Split
from mtcli.fileio import atomic_path, write_json
from mtcli.metrics import overall, predicted_labels, task_metrics
from mtcli.tasks import TASKS


def score_predictions(splits: dict[str, Split], predictions: dict[str, np.ndarray]) -> dict:
    """{'tasks': {task: metrics}, 'overall': float | None} for labeled splits."""
    scores = {task: task_metrics(TASKS[task], predictions[task], splits[task].labels) for task in predictions}
    return {"tasks": scores, "overall": overall(scores)}


def write_test_predictions(splits: dict[str, Split], predictions: dict[str, np.ndarray], out_dir: str | Path) -> list[Path]:
    """CS224N test-output files: `{task}-test-output.csv` with header `id,Predicted_...`."""
    written = []
    for task, preds in predictions.items():
        spec = TASKS[task]
        values = predicted_labels(spec, preds)
        path = Path(out_dir) / f"{task}-test-output.csv"
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write(f"id,{spec.prediction_header}\n")
            for example, value in zip(splits[task].examples, values):
                fh.write(f"{example.id},{value:.4f}\n" if spec.kind == "regression" else f"{example.id},{int(value)}\n")
        written.append(path)
    return written


def write_eval(results: dict, splits: dict[str, Split], predictions: dict[str, np.ndarray], out_dir: str | Path,
               **provenance) -> tuple[Path, dict]:
    """eval.json with the metrics and the error analysis, plus its plots (SST confusion, STS scatter)."""
    from mtcli.analysis import analyse, plot_analysis

    out_dir = Path(out_dir)
    analysis = analyse(splits, predictions)
    plot_analysis(analysis, splits, predictions, out_dir)
    return write_json(out_dir / "eval.json", {**provenance, **results, "analysis": analysis}), analysis


def scores_table(results: dict, title: str = "dev"):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("task", "metric", "value", "loss"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for task, metrics in results["tasks"].items():
        loss = f"{metrics['loss']:.4f}" if metrics.get("loss") is not None else ""
        if TASKS[task].kind == "regression":
            table.add_row(task, "pearson", f"{metrics['pearson']:.4f}", loss)
            table.add_row("", "spearman", f"{metrics['spearman']:.4f}", "")
        else:
            table.add_row(task, "accuracy", f"{metrics['accuracy']:.4f}", loss)
    if results.get("overall") is not None:
        table.add_row("[bold]overall[/]", "(sst+para+(r+1)/2)/3", f"[bold]{results['overall']:.4f}[/]", "")
    return table
