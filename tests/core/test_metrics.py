"""mtcli.core.metrics against hand computations and literal references (scipy): accuracy, F1
(binary and macro), MCC, ROC-AUC, Pearson and Spearman, and the overall score (correlations
mapped to (r + 1) / 2)."""

import numpy as np
import pytest

from scipy import stats

from mtcli.core.metrics import overall, task_metrics, unit_score
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
    metrics = task_metrics(MULTI, np.eye(3)[predicted], gold)
    assert metrics["f1"] == metrics["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_overall_maps_correlations_to_unit_scale():
    scores = {"b": {"accuracy": 0.5, "f1": 0.8}, "r": {"pearson": 0.1, "spearman": -0.2, "mse": 1.0}}
    assert unit_score(BINARY, scores["b"]) == 0.8 and unit_score(REG, scores["r"]) == pytest.approx(0.4)
    assert overall({"b": BINARY, "r": REG}, scores) == pytest.approx((0.8 + 0.4) / 2)
    assert overall({}, {}) is None


def test_mcc_and_roc_auc_against_their_definitions():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 200)
    probability = np.clip(0.3 * gold + rng.uniform(0, 0.7, 200), 0, 1)
    metrics = task_metrics(BINARY, probability, gold)
    predicted = (probability > 0.5).astype(int)
    # binary MCC is the phi coefficient: Pearson's r of the two 0/1 vectors
    assert metrics["mcc"] == pytest.approx(stats.pearsonr(predicted, gold).statistic)
    # ROC-AUC is the Mann-Whitney U of the positives' scores over the negatives', normalised
    u = stats.mannwhitneyu(probability[gold == 1], probability[gold == 0]).statistic
    assert metrics["roc_auc"] == pytest.approx(u / (gold.sum() * (len(gold) - gold.sum())))
    # both classes' F1, averaged
    f1_of = [2 * np.sum((predicted == c) & (gold == c)) / (np.sum(predicted == c) + np.sum(gold == c)) for c in (0, 1)]
    assert metrics["macro_f1"] == pytest.approx(np.mean(f1_of))


def test_undefined_metrics_are_none_and_left_out_of_overall():
    metrics = task_metrics(BINARY, np.array([0.2, 0.9]), [1, 1])  # one class present: no ROC-AUC
    assert metrics["roc_auc"] is None
    auc_task = Task(name="a", kind="binary", text=("s",), label="y", labels=("no", "yes"), metric="roc_auc")
    assert overall({"a": auc_task, "r": REG}, {"a": metrics, "r": {"spearman": 0.0}}) == pytest.approx(0.5)
    assert task_metrics(REG, np.array([1.0, 2.0]), [3.0, 3.0])["pearson"] is None  # constant gold values
    assert task_metrics(REG, np.array([1.0, 1.0]), [2.0, 3.0])["pearson"] == 0.0  # constant predictions
    mcc_task = Task(name="c", kind="binary", text=("s",), label="y", labels=("no", "yes"), metric="mcc")
    assert unit_score(mcc_task, {"mcc": -0.5}) == pytest.approx(0.25)  # a correlation: (r + 1) / 2
