"""Task metrics, shared by the torch and onnxruntime backends. Torch-free; the statistics are
scikit-learn's and scipy's.

Predictions per task kind: multiclass -> class probabilities (N, C); binary -> P(positive)
(N,); regression -> a score in the declared range (N,). A task's headline is its declared
metric; the overall score is the mean of the headlines with correlations (Pearson, Spearman,
MCC) mapped to (r + 1) / 2 — for the CS224N three, CS224N's (sst acc + para acc + (sts r +
1) / 2) / 3. A metric that a split cannot define (ROC-AUC with one class present, a
correlation with constant gold values) is None, and left out of the overall score; constant
predictions correlate 0.
"""

import warnings

import numpy as np
from scipy import stats
from sklearn import metrics as sk

from mtcli.core.tasks import CORRELATIONS, METRICS, Task


def predicted_labels(task: Task, predictions: np.ndarray) -> np.ndarray:
    """What test output files hold: a class index for classification, the score for regression."""
    if task.kind == "multiclass":
        return predictions.argmax(axis=1)
    if task.kind == "binary":
        return (predictions > 0.5).astype(np.int64)
    return predictions


def metric_names(task: Task) -> list[str]:
    """The metrics of the task's kind, its headline first."""
    return [task.metric, *(m for m, kinds in METRICS.items() if task.kind in kinds and m != task.metric)]


def task_metrics(task: Task, predictions: np.ndarray, labels) -> dict[str, float | None]:
    """Every metric of the task's kind (regression: pearson, spearman, mse; classification:
    accuracy, f1, macro_f1, mcc, roc_auc)."""
    names = ("pearson", "spearman", "mse") if task.is_regression else ("accuracy", "f1", "macro_f1", "mcc", "roc_auc")
    return {name: metric_value(task, name, predictions, labels) for name in names}


def metric_value(task: Task, name: str, predictions: np.ndarray, labels) -> float | None:
    """One metric of the task's predictions (what a bootstrap recomputes on every resample)."""
    labels = np.asarray(labels)
    if task.is_regression:
        predictions = np.asarray(predictions, dtype=np.float64)
        if name == "mse":
            return float(np.mean((predictions - labels) ** 2))
        if len(labels) < 2 or np.std(labels) == 0:  # the split defines no correlation
            return None
        if np.std(predictions) == 0:  # a model that predicts one value correlates with nothing
            return 0.0
        correlation = stats.pearsonr if name == "pearson" else stats.spearmanr
        return float(correlation(predictions, labels).statistic)
    if name == "roc_auc":
        return _roc_auc(task, predictions, labels)
    predicted = predicted_labels(task, predictions)
    if name == "accuracy":
        return float(np.mean(predicted == labels))
    if name == "mcc":
        return float(sk.matthews_corrcoef(labels, predicted))
    classes = list(range(len(task.labels)))
    average = "binary" if name == "f1" and task.kind == "binary" else "macro"
    with warnings.catch_warnings():  # undefined cases (a class never predicted) score 0, as documented
        warnings.simplefilter("ignore")
        return float(sk.f1_score(labels, predicted, labels=classes, average=average, zero_division=0))


def _roc_auc(task: Task, predictions: np.ndarray, labels: np.ndarray) -> float | None:
    present = np.unique(labels)
    if len(present) < 2:
        return None  # one class only: no ranking to measure
    if task.kind == "binary":
        return float(sk.roc_auc_score(labels, predictions))
    if len(present) < len(task.labels):
        return None  # one-vs-rest needs every class in the split
    return float(sk.roc_auc_score(labels, predictions, multi_class="ovr", average="macro"))


def headline(task: Task, metrics: dict[str, float | None]) -> float | None:
    return metrics[task.metric]


def unit_score(task: Task, metrics: dict[str, float | None]) -> float | None:
    """The headline on a 0-1 scale: correlations as (r + 1) / 2."""
    value = headline(task, metrics)
    if value is None:
        return None
    return (value + 1) / 2 if task.metric in CORRELATIONS else value


def overall(tasks: dict[str, Task], scores: dict[str, dict[str, float | None]]) -> float | None:
    """Mean of the tasks' 0-1 headlines (None when no task's headline is defined)."""
    values = [v for name, metrics in scores.items() if (v := unit_score(tasks[name], metrics)) is not None]
    return float(np.mean(values)) if values else None
