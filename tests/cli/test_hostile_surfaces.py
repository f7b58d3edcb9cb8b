"""The third adversarial pass (#47) through the command line: special files as input, deep
nesting, columns no task reads, outputs over files mtcli did not write. Each case ends in the
right output or one line `mtcli: error: ...` with exit 2; nothing is read from special files,
nothing written through links, nothing lost. (compare's cases: tests/eval/test_compare.py;
serve's: tests/serve/test_app.py; sweep's: tests/sweep/test_sweep.py.) The fourth pass (#57)
follows at the end: model cards, teacher labels, backbones, hostile encoder folders."""

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import HOSTILE_KEYS, MAIL_TASK, one_line_error, run_cli, run_cli_here




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


# ================================================================ the fourth pass (#57): model cards, teacher
# labels, backbones, hostile encoder folders. Numbers in the headings are the groups.

SECRET = "MTCLI_TEST_SECRET=do-not-publish"


def _run_copy(tmp_path, tiny_checkpoint) -> Path:
    """A copy of the tiny run folder (its best/ checkpoint, recipe, record and evaluation)."""
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_checkpoint.parent, run, symlinks=True, ignore=shutil.ignore_patterns("last"))
    return run


def _no_card(folder: Path) -> None:
    assert not folder.exists() or not (folder / "README.md").exists()


# ---------------------------------------------------------------- 1: the card publishes nothing it did not write

@pytest.mark.parametrize("target", ["/proc/self/environ", "/etc/passwd"])
def test_a_recipe_linked_to_a_secret_is_never_quoted_into_a_card(tmp_path, tiny_checkpoint, monkeypatch, target):
    monkeypatch.setenv("MTCLI_TEST_SECRET", "do-not-publish")
    run = _run_copy(tmp_path, tiny_checkpoint)
    (run / "recipe.toml").unlink()
    (run / "recipe.toml").symlink_to(target)
    for extra in (("--format", "hf"), ()):
        out = tmp_path / f"card{len(extra)}"
        line = one_line_error(run_cli_here("export", "--checkpoint", run / "best", "--out", out, *extra),
                              f"{run / 'recipe.toml'}: is a link")
        assert SECRET not in line and "root:" not in line
        _no_card(out)


def test_a_huge_or_latin1_recipe_is_one_line_and_no_card(tmp_path, tiny_checkpoint):
    run = _run_copy(tmp_path, tiny_checkpoint)
    recipe = (run / "recipe.toml").read_text()
    (run / "recipe.toml").write_text(recipe + "# " + "x" * (70 * 2**10) + "\n")
    one_line_error(run_cli_here("export", "--checkpoint", run / "best", "--format", "hf", "--out", tmp_path / "a"),
                   "recipe.toml: larger than 64 KiB")
    (run / "recipe.toml").write_bytes(recipe.encode() + "# caf\xe9\n".encode("latin-1"))
    one_line_error(run_cli_here("export", "--checkpoint", run / "best", "--format", "hf", "--out", tmp_path / "b"),
                   "recipe.toml: not valid UTF-8")
    (run / "recipe.toml").write_text('not-a-key = 1\n' + recipe)
    one_line_error(run_cli_here("export", "--checkpoint", run / "best", "--format", "hf", "--out", tmp_path / "c"),
                   "not-a-key: not a recipe key")
    _no_card(tmp_path / "a"), _no_card(tmp_path / "b"), _no_card(tmp_path / "c")


def test_the_card_quotes_the_recipe_as_mtcli_writes_it_not_its_comments(tmp_path, tiny_checkpoint):
    from mtcli.export.hf import export_hf

    run = _run_copy(tmp_path, tiny_checkpoint)
    (run / "recipe.toml").write_text((run / "recipe.toml").read_text() + f"# {SECRET}\n")
    card = (export_hf(run / "best", tmp_path / "hf") / "README.md").read_text()
    assert SECRET not in card and 'batch-size = 8' in card


# ---------------------------------------------------------------- 5, 7, 11: a hostile eval.json and recipe

def _with_eval(run: Path, tasks) -> None:
    scores = json.loads((run / "eval.json").read_text())
    (run / "eval.json").write_text(json.dumps({**scores, "tasks": tasks}) if not isinstance(tasks, str)
                                   else json.dumps(scores)[:-1] + f', "tasks": {tasks}}}')


@pytest.mark.parametrize("tasks, fragment", [
    ("[1, 2]", "tasks is not an object"),
    ('{"sts": 5}', "tasks.'sts' is not an object"),
    ('{"sts": {"pearson": 1' + "0" * 400 + "}}", "tasks.'sts'.'pearson' is 401 digits long"),
])
def test_an_eval_file_that_is_not_mtclis_is_one_line(tmp_path, tiny_checkpoint, tasks, fragment):
    run = _run_copy(tmp_path, tiny_checkpoint)
    _with_eval(run, tasks)
    one_line_error(run_cli_here("export", "--checkpoint", run / "best", "--format", "hf", "--out", tmp_path / "hf"),
                   f"{run / 'eval.json'}: {fragment}")
    _no_card(tmp_path / "hf")




def test_the_front_matter_is_yaml_of_what_was_written_whatever_the_metric_names(tmp_path, tiny_checkpoint):
    import yaml

    from mtcli.export.hf import export_hf

    run = _run_copy(tmp_path, tiny_checkpoint)
    metrics = {key: 0.5 + i / 100 for i, key in enumerate(HOSTILE_KEYS)}
    _with_eval(run, {"sts": {**metrics, "nan": float("nan"), "inf": float("inf")}})
    card = (export_hf(run / "best", tmp_path / "hf") / "README.md").read_text()
    assert card.isascii() or all(c.isprintable() or c == "\n" for c in card.split("---\n", 2)[1])
    front = yaml.safe_load(card.split("---\n", 2)[1])
    sts = next(r for r in front["model-index"][0]["results"] if r["task"]["name"] == "sts")
    read = {m["type"]: m["value"] for m in sts["metrics"]}
    assert {k: v for k, v in read.items() if k in metrics} == metrics
    assert math.isnan(read["nan"]) and read["inf"] == math.inf
    body = card.split("---\n", 2)[2]
    dev = body.split("## Dev metrics", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in dev.splitlines() if line.startswith("| sts |")]
    assert len(rows) == len(metrics) + 2 and all(line.count("|") - line.count("\\|") == 4 for line in rows)
    assert "<script>" not in body and not any(line.startswith("# heading") for line in body.splitlines())


def test_a_recipe_holding_a_fence_or_html_stays_inside_its_code_block(tmp_path, tiny_checkpoint):
    from mtcli.export.hf import export_hf

    run = _run_copy(tmp_path, tiny_checkpoint)
    text = (run / "recipe.toml").read_text()
    hostile = '"```\\n## Owned\\n<script>alert(1)</script>\\n````"'
    (run / "recipe.toml").write_text(re.sub(r'(?m)^sampler = .*$', lambda m: f"sampler = {hostile}", text))
    card = (export_hf(run / "best", tmp_path / "hf") / "README.md").read_text()
    lines = card.splitlines()
    start = lines.index("`````toml")   # a fence longer than the recipe's longest run of backticks
    end = lines.index("`````", start + 1)
    assert all("<script>" not in line for i, line in enumerate(lines) if not start < i < end)


# ---------------------------------------------------------------- 2: poisoned teacher labels are never reused

def _poison(path: Path) -> None:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="numpy") as fh:
        metadata, arrays = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    arrays["sts"] = (5.0 - arrays["sts"]).astype(arrays["sts"].dtype)
    arrays["sst"] = np.ascontiguousarray(arrays["sst"][:, ::-1])
    save_file(arrays, str(path), metadata=metadata)


def test_edited_teacher_labels_are_neither_resumed_nor_reused(tmp_path, tiny_model_dir, tiny_export, monkeypatch):
    from rich.console import Console

    from conftest import crashed_at
    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer
    from mtcli.train.teacher import Teacher

    def config(name, **extra):
        return TrainConfig(model_dir=str(tiny_model_dir), out=str(tmp_path / "runs"), name=name, limit=24,
                           batch_size=8, max_steps=4, teacher=[str(tiny_export)], **extra)

    run = crashed_at(config("first", save_every=2), Console(quiet=True), 3).run_dir
    record = json.loads((run / "data.json").read_text())
    assert set(record["teacher_labels"]) == {"sst", "para", "sts"}
    forged = tmp_path / "runs" / "forged"   # labels and record edited together: the spot check catches them
    shutil.copytree(run, forged)
    _poison(forged / "teacher-labels.safetensors")
    from safetensors.numpy import load_file as load_arrays

    from mtcli.run.teacher_labels import Labels
    arrays = load_arrays(str(forged / "teacher-labels.safetensors"))
    record["teacher_labels"] = {t: Labels("", "", "", arrays[t]).sha256 for t in record["teacher_labels"]}
    (forged / "data.json").write_text(json.dumps(record))
    one_line_error(run_cli_here("train", "--resume", forged), "predicts", "randomly drawn",
                   "the labels were edited")
    shutil.rmtree(forged)
    _poison(run / "teacher-labels.safetensors")
    one_line_error(run_cli_here("train", "--resume", run), "teacher-labels.safetensors",
                   "changed since this run wrote them")
    labelled = []
    original = Teacher.load
    monkeypatch.setattr(Teacher, "load", lambda self, device: labelled.append(1) or original(self, device))
    second = Trainer(config("second"), Console(quiet=True))
    assert labelled, "the poisoned labels of the sibling were reused"
    from mtcli.inference.scorer import Scorer

    fresh = Scorer(tiny_export, providers=("cpu",)).score("sts", second.units["sts"].texts)
    np.testing.assert_allclose(second.units["sts"].teacher["sts"], fresh, atol=1e-6)


# ---------------------------------------------------------------- 3: evaluated text, however it is spelled

def test_unlabeled_text_the_tokenizer_reads_as_dev_text_is_refused(tmp_path, tiny_model_dir, tiny_export):
    from conftest import builtin
    from mtcli.core.data import read_split

    dev = [ex.texts[0] for ex in read_split(builtin("sst"), "dev").examples[:2]]
    spelled = [dev[0].upper(), "  ".join(dev[1].split(" ")) + "  "]
    tasks = tmp_path / "sst.toml"
    sst = builtin("sst")
    (tmp_path / "extra.tsv").write_text("sentence\nNothing to see here.\n" + "".join(f"{s}\n" for s in spelled))
    tasks.write_text(f'[[task]]\nname = "sst"\nkind = "multiclass"\ntext = ["sentence"]\nlabel = "sentiment"\n'
                     f'labels = {json.dumps(list(sst.labels))}\ntrain = "{sst.file("train")}"\n'
                     f'dev = "{sst.file("dev")}"\nunlabeled = ["extra.tsv"]\n')
    result = run_cli_here("train", "--model-dir", tiny_model_dir, "--out", tmp_path / "runs", "--tasks", tasks,
                          "--teacher", tiny_export, "--limit", "8", "--max-steps", "1")
    one_line_error(result, f"{tmp_path / 'extra.tsv'}:3:", "2 of its 3 rows share a sentence", "as the model sees it")


# ---------------------------------------------------------------- 4, 9: hostile encoder folders

def _encoder_copy(tmp_path, tiny_model_dir, name="enc") -> Path:
    folder = tmp_path / name
    shutil.copytree(tiny_model_dir, folder)
    return folder


def _edit_config(folder: Path, **values) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **values}))


def _edit_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    edit(weights)
    save_file(weights, str(folder / "model.safetensors"))


def _train(folder, tmp_path):
    return run_cli_here("train", "--model-dir", folder, "--out", tmp_path / "runs", "--limit", "8", "--max-steps", "1")


def test_a_config_huge_in_all_is_refused_before_anything_is_built(tmp_path, tiny_model_dir):
    folder = _encoder_copy(tmp_path, tiny_model_dir)
    _edit_config(folder, vocab_size=1_000_000, hidden_size=4096, num_attention_heads=16, intermediate_size=16384)
    one_line_error(_train(folder, tmp_path), f"{folder / 'config.json'}: its sizes make an encoder of",
                   "more than the 2,000,000,000")


def test_weights_that_do_not_fit_the_config_are_one_line(tmp_path, tiny_model_dir):
    import torch

    extra = _encoder_copy(tmp_path, tiny_model_dir, "extra")
    _edit_weights(extra, lambda w: w.update({"encoder.layer.99.output.dense.bias": torch.zeros(32)}))
    one_line_error(_train(extra, tmp_path), "model.safetensors: holds 1 encoder weight(s) config.json has no place",
                   "layers.99.ffn_out.bias")
    quantized = _encoder_copy(tmp_path, tiny_model_dir, "int8")
    name = "encoder.layer.0.intermediate.dense.weight"
    _edit_weights(quantized, lambda w: w.update({name: (w[name] * 100).to(torch.int8)}))
    one_line_error(_train(quantized, tmp_path), f"{quantized / 'model.safetensors'}: {name} is int8",
                   "not floating point")


def test_a_tokenizer_with_ids_past_the_vocabulary_is_one_line(tmp_path, tiny_model_dir):
    folder = _encoder_copy(tmp_path, tiny_model_dir)
    _edit_config(folder, vocab_size=1000)
    _edit_weights(folder, lambda w: w.update({"embeddings.word_embeddings.weight":
                                              w["embeddings.word_embeddings.weight"][:1000].clone()}))
    one_line_error(_train(folder, tmp_path), f"{folder / 'config.json'}: vocab_size is 1,000",
                   "tokenizer and encoder are not one model")


def test_a_pytorch_bin_is_read_as_plain_tensors_only(tmp_path, tiny_model_dir):
    import pickle

    import torch

    from mtcli.model import MinBert
    from safetensors.torch import load_file

    plain = _encoder_copy(tmp_path, tiny_model_dir, "bin")
    torch.save(load_file(str(plain / "model.safetensors")), plain / "pytorch_model.bin")
    (plain / "model.safetensors").unlink()
    a, b = MinBert.from_pretrained(plain), MinBert.from_pretrained(tiny_model_dir)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    hostile = _encoder_copy(tmp_path, tiny_model_dir, "hostile")
    (hostile / "model.safetensors").unlink()
    with open(hostile / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"x": Payload()}, fh)
    one_line_error(_train(hostile, tmp_path), "pytorch_model.bin: cannot read weights")
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------- 6, 10: backbones install

def test_backbones_install_never_writes_through_a_link(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "backbones"
    root.mkdir()
    (root / "all-mpnet-base-v2").symlink_to(elsewhere)
    monkeypatch.setenv("MTCLI_BACKBONES", str(root))
    one_line_error(run_cli_here("backbones", "install", "all-mpnet-base-v2", "--wheels", tmp_path),
                   f"{root / 'all-mpnet-base-v2'}: is a link", "nothing was changed")
    assert list(elsewhere.iterdir()) == []
    one_line_error(run_cli_here("train", "--model-dir", "all-mpnet-base-v2", "--out", tmp_path / "runs"), "is a link")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("MTCLI_BACKBONES", str(tmp_path / "file"))
    one_line_error(run_cli_here("backbones", "install", "all-mpnet-base-v2", "--wheels", tmp_path),
                   "($MTCLI_BACKBONES): is a file, not a folder")


# ---------------------------------------------------------------- 8, 10: files of mtcli's folders are checked

@pytest.mark.parametrize("target", ["/proc/self/environ", "/etc/passwd"])
def test_a_graph_linked_elsewhere_is_never_opened(tmp_path, tiny_export, target):
    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    (export / "sts.onnx").unlink()
    (export / "sts.onnx").symlink_to(target)
    rows = tmp_path / "rows.tsv"
    rows.write_text("sentence1\tsentence2\nA dog.\tA cat.\n")
    one_line_error(run_cli_here("score", "sts", rows, "--model", export), f"{export / 'sts.onnx'}: is a link")


def test_a_fifo_graph_is_a_fifo_not_missing(tmp_path, tiny_export):
    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    (export / "sts.onnx").unlink()
    os.mkfifo(export / "sts.onnx")
    rows = tmp_path / "rows.tsv"
    rows.write_text("sentence1\tsentence2\nA dog.\tA cat.\n")
    one_line_error(run_cli_here("score", "sts", rows, "--model", export), "sts.onnx: is a FIFO")


def test_hf_folder_heads_linked_or_misshapen_are_named(tmp_path, tiny_checkpoint):
    import torch
    from safetensors.torch import load_file, save_file

    from mtcli.export.hf import export_hf

    folder = export_hf(tiny_checkpoint, tmp_path / "hf")
    linked = tmp_path / "linked"
    shutil.copytree(folder, linked)
    (linked / "heads.safetensors").unlink()
    (linked / "heads.safetensors").symlink_to("/etc/passwd")
    one_line_error(run_cli_here("export", "--checkpoint", linked, "--out", tmp_path / "o1"),
                   f"{linked / 'heads.safetensors'}: is a link")
    shaped = tmp_path / "shaped"
    shutil.copytree(folder, shaped)
    heads = load_file(str(shaped / "heads.safetensors"))
    name = next(k for k in heads if k.endswith("weight"))
    heads[name] = torch.zeros(3, 5)
    save_file(heads, str(shaped / "heads.safetensors"))
    one_line_error(run_cli_here("export", "--checkpoint", shaped, "--out", tmp_path / "o2"),
                   f"{shaped / 'heads.safetensors'}: tensor {name} has shape (3, 5)")
    meta = json.loads((folder / "mtcli-heads.json").read_text())
    (shaped / "mtcli-heads.json").write_text(json.dumps({**meta, "heads": {**meta["heads"], "max_length": 1}}))
    line = one_line_error(run_cli_here("export", "--checkpoint", shaped, "--out", tmp_path / "o3"), "mtcli-heads.json")
    assert "mtcli.json" not in line.replace("mtcli-heads.json", "")


def test_all_nan_heads_are_refused_not_exported(tmp_path, tiny_checkpoint):
    import torch
    from safetensors.torch import load_file, save_file

    checkpoint = tmp_path / "best"
    shutil.copytree(tiny_checkpoint, checkpoint)
    weights = load_file(str(checkpoint / "model.safetensors"))
    for name in [k for k in weights if k.startswith("heads.")]:
        weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(checkpoint / "model.safetensors"))
    one_line_error(run_cli_here("export", "--checkpoint", checkpoint, "--out", tmp_path / "e"),
                   "holds NaN or infinite values")
    assert not (tmp_path / "e").exists()


def test_a_teacher_folder_with_a_link_is_not_hashed_through(tmp_path, tiny_model_dir, tiny_checkpoint, tiny_export):
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_checkpoint, teacher)
    (teacher / "tokenizer.json").unlink()
    (teacher / "tokenizer.json").symlink_to("/etc/passwd")
    one_line_error(run_cli_here("train", "--model-dir", tiny_model_dir, "--out", tmp_path / "runs", "--limit", "8",
                                "--max-steps", "1", "--teacher", teacher), f"{teacher / 'tokenizer.json'}: is a link")


@pytest.mark.parametrize("manifest, fragment", [(DEEP_JSON, "nested too deeply"), ("", "not valid JSON"),
                                                ("[]", "not a JSON object")])
def test_a_damaged_manifest_given_as_a_teacher_says_what_is_wrong(tmp_path, tiny_model_dir, tiny_export, manifest,
                                                                  fragment):
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_export, teacher)
    (teacher / "manifest.json").write_text(manifest)
    one_line_error(run_cli_here("train", "--model-dir", tiny_model_dir, "--out", tmp_path / "runs", "--limit", "8",
                                "--max-steps", "1", "--teacher", teacher), f"{teacher / 'manifest.json'}", fragment)


# ---------------------------------------------------------------- 9: options that trained silently wrong

@pytest.mark.parametrize("args, fragment", [
    (["--teacher", ","], "--teacher: an empty path"),
    (["--teacher-temperature", "1e-310"], "--teacher-temperature 1e-310: must be between 0.01 and 1000"),
])
def test_options_that_would_train_wrong_are_refused(tmp_path, tiny_model_dir, tiny_export, args, fragment):
    if "--teacher" not in args:
        args = ["--teacher", str(tiny_export), *args]
    one_line_error(run_cli_here("train", "--model-dir", tiny_model_dir, "--out", tmp_path / "runs", "--limit", "8",
                                "--max-steps", "1", *args), fragment)
