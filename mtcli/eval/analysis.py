"""Error analysis of dev predictions (seed 000, section 6.3): where each task goes wrong,
by the task's kind:

  multiclass  confusion matrix; of the errors, the share predicted a higher / lower class,
              and the share off by two or more classes (ordinal label sets such as SST-5)
  binary      false positive and false negative rates, and their shares of the errors
  regression  over- and under-prediction rates, mean signed and absolute error;
              predicted-vs-gold scatter
and the five worst examples per task. Torch-free: both eval backends use it.
"""

from pathlib import Path

import numpy as np

from mtcli.core.data import Split
from mtcli.core.tasks import Task, plot_names_of

WORST = 5


def confusion_matrix(predictions: np.ndarray, labels, num_labels: int) -> np.ndarray:
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), predictions.argmax(axis=1)), 1)
    return matrix


def _worst(split: Split, errors: np.ndarray, shown: list[str]) -> list[dict]:
    order = np.argsort(-errors, kind="stable")[:WORST]
    return [{"id": split.examples[i].id, "texts": list(split.examples[i].texts), "gold": split.examples[i].label,
             "predicted": shown[i], "error": float(errors[i])} for i in order]


def analyse_multiclass(split: Split, probabilities: np.ndarray) -> dict:
    gold = np.asarray(split.labels)
    predicted = probabilities.argmax(axis=1)
    wrong = predicted != gold
    errors = max(int(wrong.sum()), 1)
    # how badly: distance between classes, then confidence in the wrong class
    badness = np.abs(predicted - gold) + probabilities.max(axis=1) * wrong
    names = split.task.labels
    return {
        "confusion": confusion_matrix(probabilities, gold, len(names)).tolist(),
        "higher_class_share": float(((predicted > gold) & wrong).sum() / errors),
        "lower_class_share": float(((predicted < gold) & wrong).sum() / errors),
        "off_by_two_or_more_share": float((np.abs(predicted - gold) >= 2).sum() / errors),
        "worst": _worst(split, badness * wrong, [f"{names[p]} ({probabilities[i, p]:.2f})" for i, p in enumerate(predicted)]),
    }


def analyse_binary(split: Split, probabilities: np.ndarray) -> dict:
    gold = np.asarray(split.labels)
    predicted = (probabilities > 0.5).astype(np.int64)
    fp = int(((predicted == 1) & (gold == 0)).sum())
    fn = int(((predicted == 0) & (gold == 1)).sum())
    errors = max(fp + fn, 1)
    return {
        "false_positive_rate": fp / max(int((gold == 0).sum()), 1),
        "false_negative_rate": fn / max(int((gold == 1).sum()), 1),
        "false_positive_share": fp / errors,
        "false_negative_share": fn / errors,
        "worst": _worst(split, np.abs(probabilities - gold), [f"{p:.2f}" for p in probabilities]),
    }


def analyse_regression(split: Split, scores: np.ndarray) -> dict:
    gold = np.asarray(split.labels, dtype=np.float64)
    diff = scores - gold
    return {
        "over_prediction_rate": float((diff > 0).mean()),
        "under_prediction_rate": float((diff < 0).mean()),
        "mean_signed_error": float(diff.mean()),
        "mean_absolute_error": float(np.abs(diff).mean()),
        "worst": _worst(split, np.abs(diff), [f"{s:.2f}" for s in scores]),
    }


ANALYSES = {"multiclass": analyse_multiclass, "binary": analyse_binary, "regression": analyse_regression}


def analyse(splits: dict[str, Split], predictions: dict[str, np.ndarray]) -> dict:
    return {name: ANALYSES[splits[name].task.kind](splits[name], predictions[name]) for name in predictions}


def plot_names(task: Task) -> list[str]:
    """The plots `plot_analysis` draws for a task: a confusion matrix or a scatter."""
    return plot_names_of(task.name, task.kind)


def plot_analysis(analysis: dict, splits: dict[str, Split], predictions: dict[str, np.ndarray], out_dir: Path) -> list[Path]:
    from mtcli.eval.plots import plot_confusion, plot_scatter

    written = []
    for name in analysis:
        task = splits[name].task
        for file in plot_names(task):
            if task.kind == "multiclass":
                written.append(plot_confusion(np.array(analysis[name]["confusion"]), list(task.labels), out_dir / file,
                                              title=f"{task.heading} dev confusion"))
            else:
                written.append(plot_scatter(np.asarray(splits[name].labels), predictions[name], out_dir / file,
                                            task.range, title=f"{task.heading} dev: predicted vs gold"))
    return written


def analysis_tables(analysis: dict, tasks: dict[str, Task]) -> list:
    """Rich renderables: the rates per task and the worst examples."""
    from rich.table import Table

    tables = []
    rates = Table(title="error analysis", title_justify="left")
    rates.add_column("task")
    rates.add_column("measure")
    rates.add_column("value", justify="right")
    for name, a in analysis.items():
        kind = tasks[name].kind
        if kind == "multiclass":
            rates.add_row(name, "errors predicted a higher class", f"{a['higher_class_share']:.1%}")
            rates.add_row("", "errors predicted a lower class", f"{a['lower_class_share']:.1%}")
            rates.add_row("", "errors off by 2+ classes", f"{a['off_by_two_or_more_share']:.1%}")
        elif kind == "binary":
            rates.add_row(name, "false positive rate (share of errors)", f"{a['false_positive_rate']:.1%} ({a['false_positive_share']:.0%})")
            rates.add_row("", "false negative rate (share of errors)", f"{a['false_negative_rate']:.1%} ({a['false_negative_share']:.0%})")
        else:
            rates.add_row(name, "over-predicted / under-predicted", f"{a['over_prediction_rate']:.1%} / {a['under_prediction_rate']:.1%}")
            rates.add_row("", "mean signed / absolute error", f"{a['mean_signed_error']:+.2f} / {a['mean_absolute_error']:.2f}")
    tables.append(rates)
    for name, a in analysis.items():
        if tasks[name].kind != "multiclass":
            continue
        confusion = Table(title=f"{name} confusion (rows gold, columns predicted)", title_justify="left")
        confusion.add_column("gold \\ pred")
        for label in tasks[name].labels:
            confusion.add_column(label, justify="right")
        for label, row in zip(tasks[name].labels, a["confusion"]):
            confusion.add_row(label, *map(str, row))
        tables.append(confusion)
    worst = Table(title=f"{WORST} worst examples per task", title_justify="left")
    for column in ("task", "gold", "predicted", "text"):
        worst.add_column(column, overflow="fold")
    for name, a in analysis.items():
        for item in a["worst"]:
            worst.add_row(name, f"{item['gold']}", item["predicted"], " ||| ".join(t[:120] for t in item["texts"]))
    tables.append(worst)
    return tables
