"""mtcli.core.metrics against hand computations: accuracy, F1 (binary and macro), Pearson and
Spearman, and the overall score (correlations mapped to (r + 1) / 2)."""

import numpy as np
import pytest

from mtcli.core.metrics import f1, overall, task_metrics, unit_score
from mtcli.core.tasks import Task

BINARY = Task(name="b", kind="binary", text=("s",), label="y", labels=("no", "yes"), metric="f1")
MULTI = Task(name="m", kind="multiclass", text=("s",), label="y", labels=("a", "b", "c"))
REG = Task(name="r", kind="regression", text=("s",), label="y", range=(0.0, 5.0), metric="spearman")


def test_binary_f1_is_the_positive_class():
    # predicted 1,1,0,0,1 vs gold 1,0,0,1,1: tp 2, fp 1, fn 1 -> F1 = 4 / 6
    metrics = task_metrics(BINARY, np.array([0.9, 0.6, 0.2, 0.4, 0.7]), [1, 0, 0, 1, 1])
    assert metrics["f1"] == pytest.approx(2 / 3) and metrics["accuracy"] == pytest.approx(3 / 5)


def test_macro_f1_averages_the_classes():
    predicted, gold = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])
    # class 0: 1.0; class 1: tp 1, fn 1 -> 2/3; class 2: tp 1, fp 1 -> 2/3
    assert f1(predicted, gold, 3) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert task_metrics(MULTI, np.eye(3)[predicted], gold)["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_overall_maps_correlations_to_unit_scale():
    scores = {"b": {"accuracy": 0.5, "f1": 0.8}, "r": {"pearson": 0.1, "spearman": -0.2, "mse": 1.0}}
    assert unit_score(BINARY, scores["b"]) == 0.8 and unit_score(REG, scores["r"]) == pytest.approx(0.4)
    assert overall({"b": BINARY, "r": REG}, scores) == pytest.approx((0.8 + 0.4) / 2)
    assert overall({}, {}) is None
