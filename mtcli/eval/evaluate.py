"""Evaluation: metrics from predictions, eval.json (with the error analysis of
mtcli.eval.analysis), CS224N test-output files, the Rich table.

Backend-neutral: the torch and onnxruntime paths each produce predictions per task
(probabilities or scores, in split order) and hand them here.
"""

from pathlib import Path

import numpy as np

from mtcli.core.data import Split
from mtcli.core.fileio import atomic_path, read_json_dict, refuse_overwrite_unless, write_json
from mtcli.core.metrics import overall, predicted_labels, task_metrics
from mtcli.core.tasks import TASKS
from mtcli.core.tsv import TsvWriter

EVAL_FORMAT = "mtcli-eval"
EVAL_FILES = ("eval.json", "confusion_sst.png", "sts_scatter.png")


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


def score_predictions(splits: dict[str, Split], predictions: dict[str, np.ndarray]) -> dict:
    """{'tasks': {task: metrics}, 'overall': float | None} for labeled splits."""
    scores = {task: task_metrics(TASKS[task], predictions[task], splits[task].labels) for task in predictions}
    return {"tasks": scores, "overall": overall(scores)}


def write_test_predictions(splits: dict[str, Split], predictions: dict[str, np.ndarray], out_dir: str | Path) -> list[Path]:
    """CS224N test-output files: `{task}-test-output.csv` with header `id,Predicted_...`."""
    paths = {task: Path(out_dir) / f"{task}-test-output.csv" for task in predictions}
    for path in paths.values():
        refuse_overwrite_unless(path, written_by_mtcli)
    for task, preds in predictions.items():
        spec = TASKS[task]
        values = predicted_labels(spec, preds)
        with atomic_path(paths[task]) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = TsvWriter(fh, delimiter=",")
            writer.writerow(["id", spec.prediction_header])
            writer.writerows([example.id, f"{value:.4f}" if spec.kind == "regression" else str(int(value))]
                             for example, value in zip(splits[task].examples, values))
    return list(paths.values())


def write_eval(results: dict, splits: dict[str, Split], predictions: dict[str, np.ndarray], out_dir: str | Path,
               **provenance) -> tuple[Path, dict]:
    """eval.json with the metrics and the error analysis, plus its plots (SST confusion, STS scatter)."""
    from mtcli.eval.analysis import analyse, plot_analysis

    out_dir = Path(out_dir)
    for name in EVAL_FILES:
        refuse_overwrite_unless(out_dir / name, written_by_mtcli)
    analysis = analyse(splits, predictions)
    plot_analysis(analysis, splits, predictions, out_dir)
    record = {"format": EVAL_FORMAT, **provenance, **results, "analysis": analysis}
    return write_json(out_dir / "eval.json", record), analysis


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
