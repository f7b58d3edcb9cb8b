"""Task metrics, shared by the torch and onnxruntime backends. Torch-free.

Predictions per task kind: multiclass -> class probabilities (N, C); binary -> P(positive)
(N,); regression -> a score in the declared range (N,). A task's headline is its declared
metric; the overall score is the mean of the headlines with correlations mapped to
(r + 1) / 2 — for the CS224N three, CS224N's (sst acc + para acc + (sts r + 1) / 2) / 3.
"""

import numpy as np
from scipy import stats

from mtcli.core.tasks import CORRELATIONS, Task


def predicted_labels(task: Task, predictions: np.ndarray) -> np.ndarray:
    """What test output files hold: a class index for classification, the score for regression."""
    if task.kind == "multiclass":
        return predictions.argmax(axis=1)
    if task.kind == "binary":
        return (predictions > 0.5).astype(np.int64)
    return predictions


def f1(predicted: np.ndarray, gold: np.ndarray, classes: int) -> float:
    """F1 of the positive class (binary) or the unweighted mean over classes (macro F1)."""
    scores = []
    for c in ([1] if classes == 2 else range(classes)):
        tp = np.sum((predicted == c) & (gold == c))
        fp = np.sum((predicted == c) & (gold != c))
        fn = np.sum((predicted != c) & (gold == c))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


def task_metrics(task: Task, predictions: np.ndarray, labels) -> dict[str, float]:
    labels = np.asarray(labels)
    if task.is_regression:
        mse = float(np.mean((predictions - labels) ** 2))
        if len(labels) < 2 or np.std(predictions) == 0 or np.std(labels) == 0:
            return {"pearson": 0.0, "spearman": 0.0, "mse": mse}
        return {"pearson": float(stats.pearsonr(predictions, labels).statistic),
                "spearman": float(stats.spearmanr(predictions, labels).statistic), "mse": mse}
    predicted = predicted_labels(task, predictions)
    return {"accuracy": float(np.mean(predicted == labels)), "f1": f1(predicted, labels, len(task.labels))}


def headline(task: Task, metrics: dict[str, float]) -> float:
    return metrics[task.metric]


def unit_score(task: Task, metrics: dict[str, float]) -> float:
    """The headline on a 0-1 scale: correlations as (r + 1) / 2."""
    value = headline(task, metrics)
    return (value + 1) / 2 if task.metric in CORRELATIONS else value


def overall(tasks: dict[str, Task], scores: dict[str, dict[str, float]]) -> float | None:
    """Mean of the tasks' 0-1 headlines (None when no task was scored)."""
    if not scores:
        return None
    return float(np.mean([unit_score(tasks[name], metrics) for name, metrics in scores.items()]))
