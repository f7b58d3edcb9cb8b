"""Issue 16 through the command line, as a user or an adversary would meet it: mtcli never
removes or overwrites what it did not write, refuses what would garble or destroy, and says
so in one line (exit 2, no traceback)."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO, one_line_error
from mtcli.cli import main




class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture()
def cli(capsys, monkeypatch):
    """`mtcli ARGS` through the console entry point, in this process (no torch start-up per case)."""
    def run(*args):
        monkeypatch.setattr(sys, "argv", ["mtcli", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code or 0
        out, err = capsys.readouterr()
        return _Result(code, out, err)
    return run


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture()
def run_copy(tiny_checkpoint, tmp_path):
    """A copy of the tiny training run (best/, last/, metrics.jsonl, ...), to try to destroy."""
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_checkpoint.parent, run)
    return run


# ---------------------------------------------------------------- 1. export never deletes what it did not write

@pytest.mark.parametrize("out, fragment", [
    ("runs/tiny", "holds the checkpoint"),
    ("runs/tiny/best", "holds the checkpoint"),
    ("runs", "holds the checkpoint"),
    (".", "holds the checkpoint"),
    ("runs/tiny/onnx", "is inside the run folder"),
    ("user", "folder is not empty and is not an earlier `mtcli export`"),
])
def test_export_refuses_an_out_that_would_destroy(cli, run_copy, tmp_path, monkeypatch, out, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "user" / "subdir").mkdir(parents=True)
    (tmp_path / "user" / "notes.txt").write_text("my notes")
    before = _tree(tmp_path)
    one_line_error(cli("export", "--checkpoint", "runs/tiny/best", "--out", out), fragment)
    assert _tree(tmp_path) == before


def test_export_replaces_only_its_own_export(cli, run_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "export"
    out.mkdir()
    (out / ".gitkeep").touch()
    assert cli("export", "--checkpoint", run_copy / "best", "--out", out).returncode == 0
    assert {"manifest.json", "sst.onnx", ".gitkeep"} <= {p.name for p in out.iterdir()}
    (out / "notes.txt").write_text("mine")
    one_line_error(cli("export", "--checkpoint", run_copy / "best", "--out", out), "export/notes.txt: was not written")
    assert (out / "notes.txt").read_text() == "mine" and (out / "sst.onnx").is_file()
    (out / "notes.txt").unlink()
    assert cli("export", "--checkpoint", run_copy / "best", "--out", out).returncode == 0  # its own: replaced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_export_opset_is_checked_first(cli, run_copy):
    result = cli("export", "--checkpoint", run_copy / "best", "--opset", "99")
    one_line_error(result, "--opset 99: mtcli exports opsets 17 to")
    assert result.stdout == ""
    one_line_error(cli("export", "--checkpoint", run_copy / "best", "--opset", "16"), "--opset 16")


def test_stale_staging_of_a_killed_export_is_swept(cli, run_copy, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".export.mtcli-{dead.pid}-0123abcd.staging"
    stale.mkdir()
    (stale / "sst.onnx").write_bytes(b"\0" * 1000)
    unknown = tmp_path / ".export.abc123.staging"  # not mtcli's pattern: left alone
    unknown.mkdir()
    assert cli("export", "--checkpoint", run_copy / "best", "--out", tmp_path / "export").returncode == 0
    assert not stale.exists() and unknown.exists()


# ---------------------------------------------------------------- 2. score -o

def _input(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text("id\tsentence1\tsentence2\nr1\tA dog.\tA cat.\n")
    return path


def test_score_refuses_to_write_over_its_input(cli, tiny_export, tmp_path):
    source = _input(tmp_path)
    original = source.read_bytes()
    (tmp_path / "soft.tsv").symlink_to(source)
    os.link(source, tmp_path / "hard.tsv")
    for out in (source, tmp_path / "soft.tsv", tmp_path / "hard.tsv"):
        one_line_error(cli("score", "sts", source, "--model", tiny_export, "-o", out), "is the input file")
    assert source.read_bytes() == original and (tmp_path / "soft.tsv").is_symlink()


def test_score_writes_through_symlinks_and_into_devices(cli, tiny_export, tmp_path):
    source = _input(tmp_path)
    link = tmp_path / "link.tsv"
    link.symlink_to(tmp_path / "target.tsv")
    assert cli("score", "sts", source, "--model", tiny_export, "-o", link).returncode == 0
    assert link.is_symlink() and (tmp_path / "target.tsv").read_text().startswith("id\tscore\n")
    try:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a copy of /dev/null
        os.mknod(tmp_path / "full", stat.S_IFCHR | 0o666, os.makedev(1, 7))  # a copy of /dev/full
    except PermissionError:
        pytest.skip("creating device nodes needs root")
    assert cli("score", "sts", source, "--model", tiny_export, "-o", tmp_path / "null").returncode == 0
    one_line_error(cli("score", "sts", source, "--model", tiny_export, "-o", tmp_path / "full"),
                    f"{tmp_path / 'full'}: disk full")
    for node in ("null", "full"):
        assert stat.S_ISCHR(os.lstat(tmp_path / node).st_mode)  # still the device, not a regular file


def test_score_to_a_link_to_stdout_writes_stdout(tiny_export, tmp_path):
    source = _input(tmp_path)
    (tmp_path / "stdout").symlink_to("/proc/self/fd/1")
    done = subprocess.run([sys.executable, "-m", "mtcli", "score", "sts", str(source), "--model", str(tiny_export),
                           "-o", str(tmp_path / "stdout")], capture_output=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().startswith("id\tscore\nr1\t") and (tmp_path / "stdout").is_symlink()


def test_sigint_during_score_says_so(tiny_export):
    child = subprocess.Popen([sys.executable, "-m", "mtcli", "score", "sts", "-", "--model", str(tiny_export)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    time.sleep(6)  # started and waiting for rows on stdin
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130 and err.decode().strip().splitlines()[-1] == "mtcli: interrupted", err.decode()


# ---------------------------------------------------------------- 4. damaged manifests through the CLI

@pytest.mark.parametrize("damage, fragment", [
    (lambda d: _edit(d, lambda m: m.pop("max_length")), "manifest.json: max_length: missing"),
    (lambda d: _edit(d, lambda m: m["tasks"]["sst"].update(inputs=["a", "b", "c"])), "tasks.sst.inputs"),
    (lambda d: _edit(d, lambda m: m["tasks"]["sst"].update(output="logits")), "tasks.sst.output"),
    (lambda d: _edit(d, lambda m: m["tasks"]["sst"].update(encoding="bogus")), "tasks.sst.encoding"),
    (lambda d: shutil.copy(d / "para.onnx", d / "sst.onnx"), "sst.onnx: the graph's inputs"),
])
def test_damaged_export_is_one_line(cli, tiny_export, tmp_path, damage, fragment):
    copy = tmp_path / "export"
    shutil.copytree(tiny_export, copy)
    damage(copy)
    (tmp_path / "in.tsv").write_text("id\tsentence\nr1\tgood\n")
    one_line_error(cli("score", "sst", tmp_path / "in.tsv", "--model", copy), fragment)
    one_line_error(cli("eval", "--onnx", copy, "--limit", "4"), "export")


def _edit(folder, change):
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------- 5. train options, checked before anything is written

@pytest.mark.parametrize("args, fragment", [
    (["--lr", "-1"], "--lr -1: must be a positive number"),
    (["--lr", "nan"], "--lr nan: must be a positive number"),
    (["--head-lr", "0"], "--head-lr 0: must be a positive number"),
    (["--dropout", "1.5"], "--dropout 1.5: must be in [0, 1)"),
    (["--seed", "-1"], "--seed -1: must be between 0 and"),
    (["--max-steps", "0"], "--max-steps 0: must be at least 1"),
    (["--warmup", "1"], "--warmup 1: must be in [0, 1) (a fraction of the steps)"),
    (["--combine", "weighted", "--task-weights", "sst=nan"], "--task-weights sst=nan: must be a finite number >= 0"),
    (["--combine", "weighted", "--task-weights", "sst=-1"], "--task-weights sst=-1: must be a finite number >= 0"),
    (["--combine", "weighted", "--task-weights", "sst=1e999"], "--task-weights sst=inf: must be a finite number >= 0"),
    (["--combine", "weighted", "--task-weights", "sst=0,para=0,sts=0"], "every task weight is 0"),
    (["--task-weights", "sst=2"], "--task-weights apply to --combine weighted; pcgrad computes its own weights"),
    (["--combine", "pcgard"], "--combine 'pcgard': unknown weighting; pick one of sum, weighted, pcgrad, mgda"),
    (["--combine", "cagrad:c=-1"], "--combine 'cagrad:c=-1': c=-1.0 must be a finite number >= 0"),
    (["--combine", "nash-mtl:steps=3"], "nash-mtl has no parameter 'steps'"),
    (["--upsample", "sts=0"], "--upsample sts=0: must be at least 1"),
    (["--upsample", "sts=inf"], "--upsample"),
    (["--limit", "0"], "--limit 0: must be at least 1 (it trains and evaluates on the first N rows"),
    (["--clip", "-1"], "--clip -1"),
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
])
def test_bad_train_options_write_nothing(cli, tmp_path, tiny_model_dir, args, fragment):
    one_line_error(cli("train", "--model-dir", tiny_model_dir, "--out", tmp_path / "runs", *args), fragment)
    assert not (tmp_path / "runs").exists()


def test_resume_with_conflicting_options_names_them(cli, run_copy):
    saved = json.loads((run_copy / "config.json").read_text())
    line = one_line_error(cli("train", "--resume", run_copy, "--lr", "0.5", "--name", "other", "--batch-size",
                               saved["batch_size"]), "--lr 0.5", "--name 'other'")
    assert "--batch-size" not in line  # the same value as the run's is no conflict
    assert json.loads((run_copy / "config.json").read_text()) == saved


def test_resume_may_change_how_the_run_computes(cli, run_copy):
    """--activation-checkpointing (memory, not results) and --save-every are no conflict on
    --resume: the run continues with them and its config.json says so; every other field stays."""
    saved = json.loads((run_copy / "config.json").read_text())
    line = one_line_error(cli("train", "--resume", run_copy, "--activation-checkpointing", "--lr", "0.5"), "--lr 0.5")
    assert "activation" not in line
    result = cli("train", "--resume", run_copy, "--activation-checkpointing", "--save-every", 7)
    assert result.returncode == 0, result.stderr
    now = json.loads((run_copy / "config.json").read_text())
    assert now == {**saved, "activation_checkpointing": True, "save_every": 7}


def test_a_run_without_checkpoint_is_not_exported(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "crashed").mkdir(parents=True)
    (tmp_path / "runs" / "crashed" / "config.json").write_text("{}")
    one_line_error(cli("export"), "no checkpoint found under runs/*/best")


def test_checkpoint_files_have_the_mode_of_every_other_file(run_copy, tiny_checkpoint):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tiny_checkpoint.iterdir()}
    assert len(set(modes.values())) == 1, modes


# ---------------------------------------------------------------- eval outputs

def test_eval_does_not_overwrite_a_users_files(cli, tiny_export, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "eval.json").write_text('{"my": "results"}')
    one_line_error(cli("eval", "--onnx", tiny_export, "--limit", "8", "--out", out), "eval.json: exists and was not written")
    assert (out / "eval.json").read_text() == '{"my": "results"}'
    (out / "eval.json").unlink()
    assert cli("eval", "--onnx", tiny_export, "--limit", "8", "--out", out).returncode == 0
    assert cli("eval", "--onnx", tiny_export, "--limit", "8", "--out", out).returncode == 0  # its own: replaced
    (out / "sts-test-output.csv").write_text("my,csv\n")
    one_line_error(cli("eval", "--onnx", tiny_export, "--split", "test", "--limit", "8", "--out", out),
                    "sts-test-output.csv: exists and was not written")
