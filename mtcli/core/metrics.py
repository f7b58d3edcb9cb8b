"""Task metrics, shared by the torch and onnxruntime backends. Torch-free.

Predictions per task: sst -> class probabilities (N, 5); para -> P(duplicate) (N,);
sts -> similarity score 0-5 (N,). The overall score is CS224N's:
(sst accuracy + para accuracy + (sts pearson + 1) / 2) / 3.
"""

import numpy as np
from scipy import stats

from mtcli.core.tasks import Task


def predicted_labels(task: Task, predictions: np.ndarray) -> np.ndarray:
    """What the test output files hold: a class for sst/para, a score for sts."""
    if task.kind == "multiclass":
        return predictions.argmax(axis=1)
    if task.kind == "binary":
        return (predictions > 0.5).astype(np.int64)
    return predictions


def task_metrics(task: Task, predictions: np.ndarray, labels) -> dict[str, float]:
    labels = np.asarray(labels)
    if task.kind == "regression":
        if len(labels) < 2 or np.std(predictions) == 0 or np.std(labels) == 0:
            return {"pearson": 0.0, "spearman": 0.0, "mse": float(np.mean((predictions - labels) ** 2))}
        return {
            "pearson": float(stats.pearsonr(predictions, labels).statistic),
            "spearman": float(stats.spearmanr(predictions, labels).statistic),
            "mse": float(np.mean((predictions - labels) ** 2)),
        }
    return {"accuracy": float(np.mean(predicted_labels(task, predictions) == labels))}


def overall(scores: dict[str, dict[str, float]]) -> float | None:
    """CS224N overall score, when all three tasks were evaluated."""
    if not {"sst", "para", "sts"} <= scores.keys():
        return None
    return (scores["sst"]["accuracy"] + scores["para"]["accuracy"] + (scores["sts"]["pearson"] + 1) / 2) / 3


def headline(task: Task, metrics: dict[str, float]) -> float:
    return metrics[task.metric]
