"""mtcli.eval: the error analysis by task kind against hand computations, and eval/report
writing their tables and plots for a trained run."""

import json

import numpy as np
import pytest

from conftest import builtin, run_cli
from mtcli.core.data import Example, Split
from mtcli.eval.analysis import analyse_binary, analyse_multiclass, analyse_regression


def _split(task, labels):
    texts = [(f"text {i}",) if not builtin(task).is_pair else (f"a {i}", f"b {i}") for i in range(len(labels))]
    return Split(builtin(task), "dev", None, [Example(str(i), t, y, i + 2) for i, (t, y) in enumerate(zip(texts, labels))])


def test_error_analysis_by_hand():
    sst = analyse_multiclass(_split("sst", [0, 1, 2, 3, 4, 2]), np.eye(5)[[0, 2, 2, 1, 4, 4]] * 0.9 + 0.02)
    # errors: gold 1 -> 2 (more positive), gold 3 -> 1 (more negative, off by 2), gold 2 -> 4 (more positive, off by 2)
    assert sst["higher_class_share"] == pytest.approx(2 / 3) and sst["lower_class_share"] == pytest.approx(1 / 3)
    assert sst["off_by_two_or_more_share"] == pytest.approx(2 / 3)
    assert np.trace(np.array(sst["confusion"])) == 3 and len(sst["worst"]) == 5
    para = analyse_binary(_split("para", [1, 1, 0, 0, 0]), np.array([0.9, 0.2, 0.7, 0.1, 0.3]))
    assert para["false_negative_rate"] == pytest.approx(0.5) and para["false_positive_rate"] == pytest.approx(1 / 3)
    assert para["false_positive_share"] == pytest.approx(0.5) and para["worst"][0]["id"] == "1"
    sts = analyse_regression(_split("sts", [1.0, 2.0, 3.0, 4.0]), np.array([1.5, 1.0, 3.0, 3.0]))
    assert sts["over_prediction_rate"] == 0.25 and sts["under_prediction_rate"] == 0.5
    assert sts["mean_signed_error"] == pytest.approx(-0.375) and sts["worst"][0]["error"] == pytest.approx(1.0)


def test_eval_writes_analysis_and_report_reads_conflicts(tiny_checkpoint, tmp_path):
    result = run_cli("eval", "--checkpoint", tiny_checkpoint, "--limit", "60", "--out", tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "error analysis" in out and "5 worst examples per task" in out and "sst confusion" in out
    report = json.loads((tmp_path / "eval.json").read_text())["analysis"]
    assert {"sst", "para", "sts"} == set(report) and (tmp_path / "scatter_sts.png").is_file()
    run = tiny_checkpoint.parent
    result = run_cli("report", run)
    assert result.returncode == 0, result.stderr.decode()
    stats = json.loads((run / "report.json").read_text())
    assert set(stats["pairs"]) == {"sst/para", "sst/sts", "para/sts"}
    assert all(0 <= s["conflict_fraction"] <= 1 and s["steps"] > 0 for s in stats["pairs"].values())
    assert (run / "conflicts.png").is_file() and (run / "weights.png").is_file()
    assert set(stats["weights"]) == {"sst", "para", "sts"}  # each task's weight over the run
    assert all(w["min"] <= w["mean"] <= w["max"] and w["steps"] > 0 for w in stats["weights"].values())
    assert "weight of each task's gradient" in result.stdout.decode()
