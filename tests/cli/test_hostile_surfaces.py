"""The third adversarial pass (#47) through the command line: special files as input, deep
nesting, columns no task reads, outputs over files mtcli did not write. Each case ends in the
right output or one line `mtcli: error: ...` with exit 2; nothing is read from special files,
nothing written through links, nothing lost. (compare's cases: tests/eval/test_compare.py;
serve's: tests/serve/test_app.py; sweep's: tests/sweep/test_sweep.py.)"""

import json
import os

import pytest

from conftest import MAIL_TASK, one_line_error, run_cli, run_cli_here




def _task_file(folder, train="train.tsv", dev="dev.tsv", name="tasks.toml"):
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("id\tmessage\tverdict\n" + "".join(
            f"{split}{i}\tcheap offer {i}\t{'spam' if i % 3 else 'ham'}\n" for i in range(8)))
    path = folder / name
    path.write_text(MAIL_TASK.format(name="mail", train=train, dev=dev))
    return path


# ---------------------------------------------------------------- 2, 5: special files are no input

def test_a_task_file_naming_proc_never_prints_the_environment(tmp_path):
    tasks = _task_file(tmp_path, train="/proc/self/environ")
    for command in (("info", "--tasks", tasks), ("train", "--tasks", tasks, "--out", tmp_path / "runs")):
        line = one_line_error(run_cli_here(*command), "/proc", "not a file of yours")
        assert "PATH=" not in line and "HOME=" not in line and len(line) < 300
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_devices_and_fifos_are_refused_wherever_a_document_is_read(tmp_path, special):
    if special == "fifo":
        os.mkfifo(tmp_path / "fifo")
        special = str(tmp_path / "fifo")
    (tmp_path / "recipe.toml").write_text(f'tasks = "{special}"\n')
    kind = "a device" if special == "/dev/zero" else "a FIFO"
    one_line_error(run_cli_here("info", "--tasks", special), f"is {kind}")
    one_line_error(run_cli_here("train", "--config", tmp_path / "recipe.toml", "--out", tmp_path / "runs"),
                    f"is {kind}")
    one_line_error(run_cli_here("train", "--config", special, "--out", tmp_path / "runs"), f"is {kind}")


def test_a_fifo_as_a_run_s_predictions_is_refused(tmp_path):
    from mtcli.core.errors import UserError
    from mtcli.run.predictions import FILE, read_dev_predictions

    os.mkfifo(tmp_path / FILE)
    with pytest.raises(UserError, match="is a FIFO"):
        read_dev_predictions(tmp_path / FILE)


# ---------------------------------------------------------------- 11: deep nesting

DEEP_JSON = "[" * 100_000 + "]" * 100_000


def test_deep_nesting_is_one_line_in_every_reader(tmp_path, tiny_export, tiny_checkpoint):
    import shutil

    deep_toml = "x = " + "[" * 50_000 + "]" * 50_000 + "\n"
    for name, what in (("tasks.toml", "--tasks"), ("recipe.toml", "--config")):
        (tmp_path / name).write_text(deep_toml)
    one_line_error(run_cli_here("info", "--tasks", tmp_path / "tasks.toml"), "nested too deeply")
    one_line_error(run_cli_here("train", "--config", tmp_path / "recipe.toml", "--out", tmp_path / "r"),
                    "nested too deeply")
    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    (export / "manifest.json").write_text(DEEP_JSON)
    one_line_error(run_cli_here("score", "sts", "-", "--model", export), "nested too deeply")
    checkpoint = tmp_path / "best"
    shutil.copytree(tiny_checkpoint, checkpoint)
    (checkpoint / "mtcli.json").write_text(DEEP_JSON)
    one_line_error(run_cli_here("export", "--checkpoint", checkpoint, "--out", tmp_path / "e"), "nested too deeply")


def test_a_deep_jsonl_row_is_a_bad_row_and_a_deep_metrics_line_a_damaged_log(tmp_path, tiny_export):
    from mtcli.core.errors import DataError
    from mtcli.run.metrics_log import read_records

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"id": "a", "sentence1": "A dog.", "sentence2": "A cat."}) + "\n" + DEEP_JSON + "\n")
    one_line_error(run_cli_here("score", "sts", rows, "--model", tiny_export, "-o", tmp_path / "o.tsv"),
                    "rows.jsonl:2: not a JSON object (nested too deeply")
    done = run_cli_here("score", "sts", rows, "--model", tiny_export, "--on-error", "skip", "-o", tmp_path / "o.tsv")
    assert done.returncode == 0 and (tmp_path / "o.tsv").read_text().count("\n") == 2
    log = tmp_path / "metrics.jsonl"
    log.write_text(DEEP_JSON + "\n" + json.dumps({"type": "step", "step": 1}) + "\n")
    with pytest.raises(DataError, match="metrics.jsonl:1"):
        read_records(log)


# ---------------------------------------------------------------- 20, 21: columns no task reads; one bad line

def test_columns_no_task_reads_are_not_converted(tmp_path, tiny_export):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": f"r{i}", "sentence1": "A dog.", "sentence2": "A cat.",
                                        "meta": {"source": [1, 2]}, "tags": ["x"]}) + "\n" for i in range(3)))
    done = run_cli_here("score", "sts", rows, "--model", tiny_export, "-o", tmp_path / "o.tsv")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o.tsv").read_text().splitlines()[1].startswith("r0\t")
    rows.write_text(json.dumps({"id": "r0", "sentence1": ["A dog."], "sentence2": "A cat."}) + "\n")
    one_line_error(run_cli_here("score", "sts", rows, "--model", tiny_export, "-o", tmp_path / "p.tsv"),
                    "rows.jsonl:1: column 'sentence1': a list where text or a number belongs")


def test_columns_no_task_reads_are_not_converted_in_parquet(tmp_path, tiny_export):
    pa = pytest.importorskip("pyarrow")
    import datetime

    import pyarrow.parquet as pq

    table = pa.table({"id": ["r0", "r1"], "sentence1": ["A dog.", "A bird."], "sentence2": ["A cat.", "A fish."],
                      "when": [datetime.datetime(2026, 1, 1), datetime.datetime(2026, 1, 2)],
                      "tags": [["a"], ["b", "c"]]})
    pq.write_table(table, tmp_path / "rows.parquet")
    done = run_cli_here("score", "sts", tmp_path / "rows.parquet", "--model", tiny_export, "-o", tmp_path / "o.tsv")
    assert done.returncode == 0, done.stderr
    assert [line.split("\t")[0] for line in (tmp_path / "o.tsv").read_text().splitlines()] == ["id", "r0", "r1"]


def test_a_jsonl_file_whose_only_line_is_bad_says_what_is_wrong_with_it(tmp_path, tiny_export):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "sentence1": \n')
    for extra in ((), ("--on-error", "skip")):
        line = one_line_error(run_cli_here("score", "sts", rows, "--model", tiny_export, *extra), "rows.jsonl:1:")
        assert "empty" not in line


# ---------------------------------------------------------------- 7: score -o over a file mtcli did not write

def test_score_never_overwrites_a_file_it_did_not_write(tmp_path, tiny_export):
    rows = tmp_path / "in.tsv"
    rows.write_text("id\tsentence1\tsentence2\nr1\tA dog.\tA cat.\n")
    mine = tmp_path / "notes.tsv"
    mine.write_text("my notes\n")
    one_line_error(run_cli_here("score", "sts", rows, "--model", tiny_export, "-o", mine),
                    "notes.tsv: exists and was not written by mtcli")
    assert mine.read_text() == "my notes\n"
    (tmp_path / "link.tsv").symlink_to(mine)
    one_line_error(run_cli_here("score", "sts", rows, "--model", tiny_export, "-o", tmp_path / "link.tsv"),
                    "was not written by mtcli")
    assert mine.read_text() == "my notes\n"
    out = tmp_path / "scores.tsv"
    for _ in range(2):   # an earlier score output is replaced
        assert run_cli_here("score", "sts", rows, "--model", tiny_export, "-o", out).returncode == 0
    assert out.read_text().startswith("id\tscore\nr1\t")


def test_score_never_overwrites_a_parquet_file_it_did_not_write(tmp_path, tiny_export):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = tmp_path / "in.tsv"
    rows.write_text("id\tsentence1\tsentence2\nr1\tA dog.\tA cat.\n")
    theirs = tmp_path / "data.parquet"
    pq.write_table(pa.table({"id": ["x"], "score": [1.0]}), theirs)
    before = theirs.read_bytes()
    one_line_error(run_cli_here("score", "sts", rows, "--model", tiny_export, "-o", theirs), "was not written by mtcli")
    assert theirs.read_bytes() == before
    ours = tmp_path / "scores.parquet"
    for _ in range(2):
        assert run_cli_here("score", "sts", rows, "--model", tiny_export, "-o", ours).returncode == 0
    assert pq.read_table(ours).column("id").to_pylist() == ["r1"]


def test_a_link_planted_in_a_run_folder_is_never_written_through(tmp_path, tiny_checkpoint):
    import shutil

    run = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_checkpoint.parent, run, symlinks=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (run / "report.json").unlink(missing_ok=True)
    (run / "report.json").symlink_to(victim)
    result = run_cli("report", run)
    one_line_error(result, "report.json: is a link")
    assert victim.read_text() == "mine"


# ---------------------------------------------------------------- 1: a lone surrogate in a file

def test_a_lone_surrogate_in_a_jsonl_file_is_a_bad_row_naming_line_and_column(tmp_path, tiny_export):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "sentence1": "A dog.", "sentence2": "A cat."}\n'
                    '{"id": "b", "sentence1": "\\ud800", "sentence2": "A cat."}\n')
    one_line_error(run_cli_here("score", "sts", rows, "--model", tiny_export, "-o", tmp_path / "o.tsv"),
                    "rows.jsonl:2: column 'sentence1': not valid Unicode text (a lone surrogate, U+D800")
    done = run_cli_here("score", "sts", rows, "--model", tiny_export, "--on-error", "skip", "-o", tmp_path / "o.tsv")
    assert done.returncode == 0 and (tmp_path / "o.tsv").read_text().splitlines()[1].startswith("a\t")


def test_a_lone_surrogate_in_training_data_is_one_line(tmp_path, tiny_model_dir):
    (tmp_path / "train.jsonl").write_text("".join(
        json.dumps({"id": f"t{i}", "message": f"word {i}", "verdict": "spam"}) + "\n" for i in range(4))
        + '{"id": "x", "message": "\\udfff", "verdict": "ham"}\n')
    tasks = _task_file(tmp_path, train="train.jsonl")
    one_line_error(run_cli_here("train", "--model-dir", tiny_model_dir, "--tasks", tasks, "--out", tmp_path / "runs",
                                 "--max-steps", "1"), "train.jsonl:5: column 'message': not valid Unicode text")


# ---------------------------------------------------------------- 26: a pretrain phase with nothing to train

COSINE_ONLY = """
[[task]]
name = "sim"
kind = "regression"
text = ["a", "b"]
label = "score"
range = [0, 5]
encoding = "cosine"
train = "pairs.tsv"
dev = "pairs.tsv"
"""


@pytest.mark.parametrize("flags", [("--pretrain-epochs", "1", "--epochs", "2"), ("--phase", "pretrain")])
def test_pretraining_heads_without_parameters_is_refused_before_anything_is_made(tmp_path, tiny_model_dir, flags):
    (tmp_path / "pairs.tsv").write_text("id\ta\tb\tscore\n" + "".join(f"p{i}\tone {i}\ttwo {i}\t{i % 5}\n"
                                                                     for i in range(8)))
    (tmp_path / "tasks.toml").write_text(COSINE_ONLY)
    one_line_error(run_cli_here("train", "--model-dir", tiny_model_dir, "--tasks", tmp_path / "tasks.toml",
                                 "--out", tmp_path / "runs", *flags), flags[0], "nothing would train")
    assert not (tmp_path / "runs").exists()
