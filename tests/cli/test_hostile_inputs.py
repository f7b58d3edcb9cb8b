"""The hostile-inputs issue through the command line: run folders, exports, task files and data
from someone else, damaged or crafted. Each case ends in correct output or one line
`mtcli: error: ...` with exit 2; nothing runs that the user did not ask for; nothing is lost."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import MAIL_TASK, REPO, one_line_error, run_cli, run_cli_here
from mtcli.model.checkpoint import TRAINER_STATE




def _data(folder, rows=24):
    folder.mkdir(parents=True, exist_ok=True)
    words = "cheap offer win now meeting lunch report call prize free tomorrow project".split()
    for split, n in (("train", rows), ("dev", 8)):
        body = "id\tmessage\tverdict\n" + "".join(
            f"{split}{i}\t{words[i % 12]} {words[(3 * i) % 12]} {i}\t{'spam' if i % 3 else 'ham'}\n" for i in range(n))
        (folder / f"{split}.tsv").write_text(body)
    return folder


def _task_file(folder, name="mail", train="train.tsv"):
    path = folder / "tasks.toml"
    path.write_text(MAIL_TASK.format(name=name, train=train, dev="dev.tsv"))
    return path


def _train(tiny_model_dir, out, *extra, cwd=None, name="r", run=run_cli):
    return run("train", "--model-dir", tiny_model_dir, "--out", out, "--name", name, "--batch-size", "4",
               "--lr", "1e-3", "--max-steps", "6", *map(str, extra), cwd=cwd)


def _refused(tiny_model_dir, out, *extra, name="r"):
    """A train command the test expects refused before any work: run in this process."""
    return _train(tiny_model_dir, out, *extra, name=name, run=run_cli_here)


@pytest.fixture(scope="module")
def mail_run(tmp_path_factory, tiny_model_dir):
    """A finished run on a declared one-task file (its last/ holds a trainer state)."""
    folder = _data(tmp_path_factory.mktemp("mail"))
    result = _train(tiny_model_dir, folder / "runs", "--tasks", _task_file(folder), "--epochs", "2")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return folder / "runs" / "r"


@pytest.fixture()
def run_copy(mail_run, tmp_path):
    copy = tmp_path / "runs" / "r"
    shutil.copytree(mail_run, copy)
    return copy


# ---------------------------------------------------------------- 1. resume never runs code from the run folder

class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_in_the_run_folder_is_not_run(run_copy, tmp_path):
    marker = tmp_path / "pwned"
    with open(run_copy / "last" / TRAINER_STATE, "wb") as fh:
        pickle.dump({"optimizer": _Payload(marker)}, fh)
    one_line_error(run_cli_here("train", "--resume", run_copy), TRAINER_STATE, "mtcli does not load it")
    time.sleep(0.2)
    assert not marker.exists(), "resume ran code from the run folder"


def test_a_state_holding_numpy_arrays_is_refused(run_copy):
    """A state is plain data (tensors, numbers, strings, lists, dicts): numpy's RNG tuple with its
    array would need numpy's classes rebuilt, and is refused like any other object."""
    import numpy as np
    import torch

    path = run_copy / "last" / TRAINER_STATE
    state = torch.load(path, weights_only=True)
    state["rng"]["numpy"] = np.random.get_state()
    torch.save(state, path)
    one_line_error(run_cli_here("train", "--resume", run_copy), TRAINER_STATE, "mtcli does not load it")


def test_a_run_folder_without_its_data_record_is_refused(run_copy):
    from mtcli.run.provenance import RECORD

    (run_copy / RECORD).unlink()
    one_line_error(run_cli_here("train", "--resume", run_copy), f"{RECORD}: not found")


# ---------------------------------------------------------------- 2. artifacts name no data outside

def test_an_export_naming_a_secret_file_reads_nothing(tiny_export, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
    hostile = tmp_path / "export"
    shutil.copytree(tiny_export, hostile)
    manifest = json.loads((hostile / "manifest.json").read_text())
    for entry in manifest["tasks"].values():
        entry["task"]["dev"] = str(secret)
    (hostile / "manifest.json").write_text(json.dumps(manifest))
    for args in ((), ("--data-dir", tmp_path / "elsewhere")):
        result = run_cli("eval", "--onnx", hostile, *args)
        assert result.returncode == 2 and b"SECRET" not in result.stderr + result.stdout, result.stderr
    (tmp_path / "elsewhere").mkdir()
    result = run_cli("eval", "--onnx", hostile, "--data-dir", tmp_path / "elsewhere")
    one_line_error(result, "elsewhere/shadow: not found")  # by name only, in the folder the user named


def test_a_checkpoint_naming_a_secret_file_reads_nothing(tiny_checkpoint, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:SECRET-HASH\n")
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    meta = json.loads((copy / "mtcli.json").read_text())
    meta["tasks"][0]["dev"] = str(secret)
    meta["tasks"][0]["label"] = "root:SECRET-HASH"
    (copy / "mtcli.json").write_text(json.dumps(meta))
    result = run_cli("eval", "--checkpoint", copy, "--out", tmp_path / "e")
    assert result.returncode == 2 and b"SECRET" not in result.stderr.replace(b"root:SECRET-HASH'", b""), result.stderr


# ---------------------------------------------------------------- 4. a torn metrics.jsonl line

def test_a_torn_last_line_is_reported_and_cut_on_resume(run_copy):
    log = run_copy / "metrics.jsonl"
    whole = log.read_text()
    log.write_text(whole + '{"type": "step", "step": 7, "lo')
    report = run_cli("report", run_copy)
    assert report.returncode == 0, report.stderr.decode()
    assert "metrics.jsonl:" in report.stderr.decode() and "torn" in report.stderr.decode()
    resumed = run_cli("train", "--resume", run_copy)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert log.read_text() == whole  # the torn line is gone, nothing else
    log.write_text('{"type": "step"}\nnot json\n' + whole)
    one_line_error(run_cli_here("report", run_copy), "metrics.jsonl:1:")


# ---------------------------------------------------------------- 7. resume from anywhere, data checked

def test_resume_from_another_directory_reads_the_same_data(tmp_path, tiny_model_dir):
    folder = _data(tmp_path / "work")
    _task_file(folder)
    killed = _train(tiny_model_dir, "runs", "--tasks", "tasks.toml", "--max-steps", "40", "--save-every", "3",
                    cwd=folder)
    assert killed.returncode == 0, killed.stderr.decode()[-2000:]
    run = folder / "runs" / "r"
    config = json.loads((run / "config.json").read_text())
    assert config["tasks"] == str(folder / "tasks.toml") and os.path.isabs(config["out"])
    record = json.loads((run / "data.json").read_text())
    assert record["files"]["mail"]["train"]["path"] == str(folder / "train.tsv")
    elsewhere = tmp_path / "elsewhere"
    _data(elsewhere, rows=5)  # other files of the same names: never read
    _task_file(elsewhere)
    resumed = run_cli("train", "--resume", run, cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    with open(folder / "train.tsv", "a") as fh:
        fh.write("extra\tnew row\tspam\n")
    one_line_error(run_cli_here("train", "--resume", run, cwd=elsewhere), "train.tsv: changed since the run read it")


# ---------------------------------------------------------------- 10. SIGTERM saves a resumable run

def test_sigterm_saves_last_and_the_run_resumes(tmp_path, tiny_model_dir):
    folder = _data(tmp_path, rows=200)   # 100 steps: the signal comes after the first 10 are logged
    args = ["-m", "mtcli", "train", "--model-dir", str(tiny_model_dir), "--out", str(tmp_path / "runs"), "--name", "t",
            "--tasks", str(_task_file(folder)), "--batch-size", "4", "--lr", "1e-3", "--epochs", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, *args], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    log = tmp_path / "runs" / "t" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and child.poll() is None:
        if log.is_file() and log.stat().st_size > 0:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=240)
    lines = err.decode().strip().splitlines()
    assert child.returncode == 143, err.decode()[-2000:]
    assert lines[-1].startswith("mtcli: terminated; saved ") and "mtcli train --resume" in lines[-1]
    state = json.loads((tmp_path / "runs" / "t" / "last" / "mtcli.json").read_text())
    assert 0 < state["step"]
    resumed = run_cli("train", "--resume", tmp_path / "runs" / "t")
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert f"resumed at step {state['step']}" in resumed.stderr.decode().replace("\n", " ")


def test_a_run_killed_before_any_checkpoint_starts_again(tmp_path, tiny_model_dir):
    folder = _data(tmp_path)
    run = tmp_path / "runs" / "k"
    run.mkdir(parents=True)
    done = _train(tiny_model_dir, tmp_path / "runs", "--tasks", _task_file(folder), name="k2")
    assert done.returncode == 0
    shutil.copy(tmp_path / "runs" / "k2" / "config.json", run / "config.json")  # what a SIGKILL at step 1 leaves
    config = json.loads((run / "config.json").read_text())
    config["name"] = "k"
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.jsonl").write_text('{"type": "step", "step": 1, "epoch_progress": 0.1, "loss": {"mail": 0.7}}\n')
    again = run_cli("train", "--resume", run)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert "starting it again from step 0" in again.stderr.decode().replace("\n", " ")
    assert (run / "last" / TRAINER_STATE).is_file()


# ---------------------------------------------------------------- 13. one line, never a traceback

def test_damaged_run_folders(run_copy):
    config = run_copy / "config.json"
    saved = config.read_text()
    config.write_text("{not json")
    one_line_error(run_cli_here("train", "--resume", run_copy), "config.json: not valid JSON")
    config.write_text(json.dumps({**json.loads(saved), "epochs": "3"}))
    one_line_error(run_cli_here("train", "--resume", run_copy), "config.json: epochs: '3' is not a whole number")
    config.write_text(json.dumps({**json.loads(saved), "combine": "upgrad"}))
    one_line_error(run_cli_here("train", "--resume", run_copy), "combine is 'upgrad' but", "one of the two was edited")
    config.write_text(json.dumps({**json.loads(saved), "tasks": None}))
    one_line_error(run_cli_here("train", "--resume", run_copy), "differs from what", "data.json")
    config.write_text(saved)
    meta = json.loads((run_copy / "best" / "mtcli.json").read_text())
    meta["heads"]["surprise"] = 1
    (run_copy / "best" / "mtcli.json").write_text(json.dumps(meta))
    one_line_error(run_cli_here("eval", "--checkpoint", run_copy / "best", "--out", run_copy.parent / "e"),
                    "mtcli.json: heads: surprise: unknown field")


def test_damaged_task_files(tmp_path, tiny_model_dir):
    folder = _data(tmp_path / "d")
    os.symlink(folder / "loop-b", folder / "loop-a")
    os.symlink(folder / "loop-a", folder / "loop-b")
    one_line_error(_refused(tiny_model_dir, tmp_path / "runs", "--tasks", _task_file(folder, train="loop-a")),
                    "loop-a: is a symlink loop")
    (folder / "sub").mkdir()
    one_line_error(_refused(tiny_model_dir, tmp_path / "runs", "--tasks", _task_file(folder, train="sub")),
                    "sub: is a folder, not a file")
    os.mkfifo(folder / "pipe")
    one_line_error(_refused(tiny_model_dir, tmp_path / "runs", "--tasks", _task_file(folder, train="pipe")),
                    "pipe: is a FIFO")
    one_line_error(_refused(tiny_model_dir, tmp_path / "runs", "--tasks", _task_file(folder, name="embed")),
                    "name: 'embed' is reserved")
    one_line_error(_refused(tiny_model_dir, tmp_path / "runs", "--tasks", _task_file(folder, name="abc\\n")),
                    "must be lower-case letters")
    wide = folder / "wide.toml"
    wide.write_text(MAIL_TASK.format(name="w", train="train.tsv", dev="dev.tsv").replace('kind = "binary"', 'kind = "regression"')
                    .replace('labels = ["ham", "spam"]', "range = [-1e308, 1e308]"))
    one_line_error(_refused(tiny_model_dir, tmp_path / "runs", "--tasks", wide), "range", "rescale the labels")
    one_line_error(_refused(tiny_model_dir, tmp_path / "runs", "--tasks", _task_file(folder), "--upsample",
                           "mail=1000000000"), "--upsample mail=1000000000")
    assert not (tmp_path / "runs").exists()  # nothing was started


@pytest.mark.parametrize("spec", ["cagrad:c=nan", "fairgrad:alpha=-1", "mgda:max_iters=-5", "cagrad:c=1,c=2",
                                  "nash-mtl:max_norm=nan", "weighted:task_weights=1"])
def test_combine_parameters_are_refused_before_the_run_folder_exists(tmp_path, tiny_model_dir, spec):
    one_line_error(_refused(tiny_model_dir, tmp_path / "runs", "--combine", spec), f"--combine '{spec}'")
    assert not (tmp_path / "runs").exists()


def test_a_run_name_is_a_name(tmp_path, tiny_model_dir):
    one_line_error(_refused(tiny_model_dir, tmp_path / "runs", name="../x"), "--name '../x': a run name is one folder")
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


def test_a_manifest_longer_than_its_graph(tiny_export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(tiny_export, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["max_length"] = 300  # the tiny model has 256 positions
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "in.tsv").write_text("sentence\n" + "word " * 400 + "\n")
    one_line_error(run_cli_here("score", "sst", tmp_path / "in.tsv", "--model", copy),
                    "does not take rows of 300 tokens, the manifest's max_length")


def test_a_concurrent_export_that_loses_the_race(tiny_checkpoint, tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from mtcli.core.errors import UserError
    from mtcli.core.fileio import staged_dir
    from mtcli.inference.manifest import export_files

    real = Path.rename

    def lose(self, target):
        if str(self).endswith(".staging"):
            raise OSError(errno.ENOTEMPTY, "Directory not empty", str(self))
        return real(self, target)

    monkeypatch.setattr(Path, "rename", lose)
    with pytest.raises(UserError, match="another process wrote or moved it while this one worked"):
        with staged_dir(tmp_path / "export", export_files, "an export") as staging:
            (staging / "manifest.json").write_text("{}")
    assert not list(tmp_path.iterdir())
