"""mtcli.eval.report: per task pair, mean gradient cosine and conflicting steps, by hand."""

import json

import pytest

from conftest import run_cli
from mtcli.eval.report import conflict_report, task_order

RECORDS = [
    {"type": "step", "step": 1, "loss": {"b": 1.0, "a": 2.0}, "grad_cosine": {"b/a": -0.5}, "weights": {"a": 1.2, "b": 1.0}},
    {"type": "step", "step": 2, "loss": {"a": 1.0, "c": 1.0, "a:simcse": 0.1}, "grad_cosine": {"a/c": 0.5},
     "weights": {"a": 1.0, "c": 1.0}},
    {"type": "step", "step": 3, "loss": {"a": 1.0, "b": 1.0}, "grad_cosine": {"a/b": 0.1}, "weights": {"a": 0.8}},
    {"type": "epoch", "epoch": 1, "step": 3, "dev": {"a": {}, "b": {}, "c": {}}, "headline": {"a": 0.5, "b": 0.7, "c": 0.1},
     "overall": 0.4},
]


def test_pairs_are_named_in_task_order_and_counted():
    assert task_order(RECORDS) == ["b", "a", "c"]  # as the run first logged them; auxiliary losses left out
    report = conflict_report(RECORDS)
    assert set(report["pairs"]) == {"b/a", "a/c"}
    assert report["pairs"]["b/a"]["steps"] == 2 and report["pairs"]["b/a"]["mean_cosine"] == pytest.approx(-0.2)
    assert report["pairs"]["b/a"]["conflict_fraction"] == 0.5 and report["pairs"]["a/c"]["conflict_fraction"] == 0.0
    assert report["weights"]["a"] == pytest.approx({"steps": 3, "mean": 1.0, "min": 0.8, "max": 1.2})
    assert report["weights"]["b"]["steps"] == 1 and list(report["weights"]) == ["b", "a", "c"]
    assert report["epochs"] == [{"epoch": 1, "step": 3, "overall": 0.4, "a": 0.5, "b": 0.7, "c": 0.1}]


def test_a_run_a_pruner_stopped_says_where_and_why(tmp_path):
    """The last stopped record's step and reason, in report.json and printed as text (a reason
    with brackets is a log's data, not rich markup)."""
    run = tmp_path / "run"
    run.mkdir()
    stopped = {"type": "stopped", "step": 3, "reason": "pruned after 96 examples a batch slot [/x] (overall 0.4)"}
    # as a log holds them; the epoch record without train_loss, which the log's shape leaves optional
    logged = [{**r, "epoch_progress": r["step"] / 3} if r["type"] == "step" else r for r in RECORDS]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*logged, stopped]))
    done = run_cli("report", run)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "stopped at step 3: pruned after 96 examples a batch slot [/x] (overall 0.4)" in " ".join(done.stdout.decode().split())
    assert json.loads((run / "report.json").read_text())["stopped"] == {"step": 3, "reason": stopped["reason"]}
