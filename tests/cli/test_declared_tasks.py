"""A task nobody wrote code for: declared in a TOML file next to small TSV/CSV files this test
writes (other column names, a regression pair and a binary single-sentence task whose
labels are names), then trained, evaluated, exported, scored and evaluated through ONNX,
all through the command line."""

import csv
import json
import random

import pytest

from conftest import run_cli, run_cli_here

TASKS = """
[[task]]
name = "answers"
kind = "regression"
text = ["question", "answer"]
label = "rating"
range = [1, 5]
metric = "spearman"
encoding = "cosine"
train = "answers-train.tsv"
dev = "answers-dev.tsv"

[[task]]
name = "spam"
kind = "binary"
text = ["message"]
label = "verdict"
labels = ["ham", "spam"]
metric = "f1"
id = "msg_id"
train = "spam-train.csv"
dev = "spam-dev.csv"
test = "spam-test.csv"
prediction_header = "is_spam"
"""


def _write(path, header, rows, delimiter):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("declared")
    rng = random.Random(0)
    words = "cheap offer win now meeting lunch report call prize free tomorrow project".split()
    for split, n in (("train", 40), ("dev", 16)):
        _write(folder / f"answers-{split}.tsv", ["question", "answer", "rating"],
               [[f"how do I {rng.choice(words)} {i}?", f"you {rng.choice(words)} it {i}", f"{rng.uniform(1, 5):.2f}"]
                for i in range(n)], "\t")
        _write(folder / f"spam-{split}.csv", ["msg_id", "message", "verdict"],
               [[f"m{split}{i}", " ".join(rng.choices(words, k=5)), rng.choice(["ham", "spam"])] for i in range(n)], ",")
    _write(folder / "spam-test.csv", ["msg_id", "message"], [[f"t{i}", "free prize now"] for i in range(5)], ",")
    path = folder / "tasks.toml"
    path.write_text(TASKS)
    return path


def test_a_declared_task_trains_exports_scores_and_evaluates(task_file, tiny_model_dir, tmp_path):
    info = run_cli("info", "--tasks", task_file, "--json")
    assert info.returncode == 0, info.stderr.decode()
    rows = json.loads(info.stdout)["data"]["rows"]
    assert rows == {"answers": {"train": 40, "dev": 16, "test": None}, "spam": {"train": 40, "dev": 16, "test": 5}}

    trained = run_cli("train", "--tasks", task_file, "--model-dir", tiny_model_dir, "--out", tmp_path / "runs",
                      "--name", "mine", "--batch-size", "8", "--max-steps", "6", "--lr", "1e-3")
    assert trained.returncode == 0, trained.stderr.decode()[-3000:]
    best = tmp_path / "runs" / "mine" / "best"
    result = json.loads((tmp_path / "runs" / "mine" / "eval.json").read_text())
    assert set(result["tasks"]) == {"answers", "spam"} and set(result["headline"]) == {"answers", "spam"}
    assert result["overall"] == pytest.approx(((result["headline"]["answers"] + 1) / 2 + result["headline"]["spam"]) / 2)
    assert (tmp_path / "runs" / "mine" / "scatter_answers.png").is_file()

    exported = run_cli("export", "--checkpoint", best, "--out", tmp_path / "export")
    assert exported.returncode == 0, exported.stderr.decode()[-3000:]
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["tasks"]["answers"]["encoding"] == "separate" and manifest["tasks"]["spam"]["task"]["labels"] == ["ham", "spam"]

    (tmp_path / "pairs.tsv").write_text("id\tquestion\tanswer\nq1\thow do I win?\tyou win it\n")
    scored = run_cli("score", "answers", tmp_path / "pairs.tsv", "--model", tmp_path / "export", "-o", tmp_path / "a.tsv")
    assert scored.returncode == 0, scored.stderr.decode()
    header, row = (tmp_path / "a.tsv").read_text().splitlines()
    assert header == "id\tscore" and row.startswith("q1\t") and 1.0 <= float(row.split("\t")[1]) <= 5.0
    messages = run_cli("score", "spam", "-", "--model", tmp_path / "export", input=b"msg_id\tmessage\nx\tfree prize\n")
    assert messages.returncode == 0 and messages.stdout.decode().splitlines()[0] == "id\tlabel\tp_spam"

    unlocated = run_cli("eval", "--onnx", tmp_path / "export", "--out", tmp_path / "onnx-eval")
    assert unlocated.returncode == 2 and "names its data files by name only" in unlocated.stderr.decode()
    onnx = run_cli("eval", "--onnx", tmp_path / "export", "--tasks", task_file, "--out", tmp_path / "onnx-eval")
    torch_eval = run_cli("eval", "--checkpoint", best, "--out", tmp_path / "torch-eval")
    assert onnx.returncode == 0 and torch_eval.returncode == 0, onnx.stderr.decode() + torch_eval.stderr.decode()
    a = json.loads((tmp_path / "onnx-eval" / "eval.json").read_text())
    b = json.loads((tmp_path / "torch-eval" / "eval.json").read_text())
    for task in ("answers", "spam"):
        assert a["headline"][task] == pytest.approx(b["headline"][task], abs=1e-3)

    test = run_cli("eval", "--split", "test", "--checkpoint", best, "--out", tmp_path / "test")
    assert test.returncode == 0, test.stderr.decode()
    lines = (tmp_path / "test" / "spam-test-output.csv").read_text().splitlines()
    assert lines[0] == "id,is_spam" and lines[1].split(",")[0] == "t0" and len(lines) == 6
    assert {line.split(",")[1] for line in lines[1:]} <= {"ham", "spam"}  # the declared class names
    assert not (tmp_path / "test" / "answers-test-output.csv").exists()  # no test file declared
    assert "no labels in the test file of spam" in test.stderr.decode().replace("\n", " ")
    assert not (tmp_path / "test" / "eval-test.json").exists()


def test_a_labeled_test_split_gets_metrics(task_file, tiny_model_dir, tmp_path):
    """SICK's and MSRP's test files carry labels: eval --split test reports and saves their metrics."""
    labeled = task_file.parent / "labeled.toml"
    labeled.write_text(TASKS.replace('test = "spam-test.csv"', 'test = "spam-dev.csv"'))
    trained = run_cli("train", "--tasks", labeled, "--model-dir", tiny_model_dir, "--out", tmp_path / "runs",
                      "--name", "l", "--batch-size", "8", "--max-steps", "3", "--lr", "1e-3")
    assert trained.returncode == 0, trained.stderr.decode()[-3000:]
    test = run_cli("eval", "--split", "test", "--checkpoint", tmp_path / "runs" / "l" / "best", "--out", tmp_path / "t")
    assert test.returncode == 0, test.stderr.decode()
    result = json.loads((tmp_path / "t" / "eval-test.json").read_text())
    assert result["split"] == "test" and set(result["tasks"]) == {"spam"} and result["overall"] is not None
    dev = json.loads((tmp_path / "runs" / "l" / "eval.json").read_text())
    assert result["tasks"]["spam"]["f1"] == pytest.approx(dev["tasks"]["spam"]["f1"], abs=1e-6)  # the same file
    assert (tmp_path / "t" / "spam-test-output.csv").is_file()


def test_task_options_name_declared_tasks(task_file, tiny_model_dir, tmp_path):
    result = run_cli_here("train", "--tasks", task_file, "--model-dir", tiny_model_dir, "--out", tmp_path,
                          "--task-weights", "sst=1")
    assert result.returncode == 2 and "--task-weights names unknown task(s) sst; tasks are answers, spam" in \
        result.stderr.decode()
    bad = task_file.parent / "bad.toml"
    bad.write_text(TASKS.replace('metric = "f1"', 'metric = "pearson"'))
    result = run_cli_here("train", "--tasks", bad, "--out", tmp_path)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert lines[0].startswith(f"mtcli: error: {bad}: task 'spam': metric: 'pearson' is not a metric of a binary task")
