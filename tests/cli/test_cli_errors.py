"""SPEC section 9 through the command line: every user-caused problem ends in exit code 2,
one line on stderr naming the file (and line), and no traceback."""

import json
import shutil

import pytest

from conftest import REPO, run_cli, run_cli_here


def _one_line_error(result, *fragments):
    err = result.stderr.decode()
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert result.returncode == 2, err
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith("mtcli: error: "), err
    assert len([l for l in lines if l.startswith("mtcli: error")]) == 1
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


@pytest.fixture()
def tsv(tmp_path):
    def write(body: bytes, name="in.tsv"):
        path = tmp_path / name
        path.write_bytes(body)
        return path
    return write


@pytest.mark.parametrize("body, fragments", [
    (b'id\tsentence1\tsentence2\nr1\t"never closed\tb\nr2\tx\n', ["in.tsv:3: fits neither reading of quotes",
                                                                 'set quoting = "csv" or "literal"']),
    (b"id\tsentence1\tsentence2\nr1\ta\tb\nr2\ta\n", ["in.tsv:3: expected 3 columns, found 2"]),
    (b"id\tsentence1\tsentence2\nr1\ta\tb\nr2\t\xc3\x28\tb\n", ["in.tsv:3: not valid UTF-8"]),
    (b"", ["in.tsv: file is empty"]),
    (b"id\tsentence1\tsentence2\nr1\t \tb\n", ["in.tsv:2: empty text"]),
])
def test_score_bad_input(tiny_export, tsv, tmp_path, body, fragments):
    out = tmp_path / "scores.tsv"
    result = run_cli("score", "sts", tsv(body), "--model", tiny_export, "-o", out)
    _one_line_error(result, *fragments)
    assert not out.exists() and not list(tmp_path.glob(".scores*"))


def test_over_long_text_is_truncated_not_refused(tiny_export, tsv, tmp_path):
    path = tsv(b"id\tsentence1\tsentence2\nlong\t" + b"token " * 10_000 + b"\tshort\n")
    result = run_cli("score", "sts", path, "--model", tiny_export, "-o", tmp_path / "o.tsv")
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "o.tsv").read_text().splitlines()[1].startswith("long\t")


def test_unknown_task(tiny_export, tsv):
    _one_line_error(run_cli_here("score", "nli", tsv(b"sentence1\tsentence2\na\tb\n"), "--model", tiny_export), "unknown task 'nli'")


def test_corrupt_onnx_and_manifest_version(tiny_export, tsv, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_export, broken)
    (broken / "sts.onnx").write_bytes(b"\x08\x01garbage")
    _one_line_error(run_cli_here("score", "sts", tsv(b"sentence1\tsentence2\na\tb\n"), "--model", broken), "sts.onnx: cannot load the ONNX graph")
    old = tmp_path / "old"
    shutil.copytree(tiny_export, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 0
    manifest["versions"]["mtcli"] = "0.0.1"
    (old / "manifest.json").write_text(json.dumps(manifest))
    _one_line_error(run_cli_here("score", "sts", tsv(b"sentence1\tsentence2\na\tb\n"), "--model", old), "manifest.json", "mtcli 0.0.1",
                    "re-run `mtcli export`")
    _one_line_error(run_cli_here("eval", "--onnx", old), "manifest.json")


def test_missing_and_corrupt_checkpoint(tiny_checkpoint, tmp_path):
    _one_line_error(run_cli_here("eval", "--checkpoint", tmp_path / "nope"), "nope: checkpoint folder not found")
    _one_line_error(run_cli_here("export", "--checkpoint", tmp_path, "--out", tmp_path / "export"),
                    "not an mtcli checkpoint")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_checkpoint, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    _one_line_error(run_cli_here("eval", "--checkpoint", corrupt, "--limit", "5"), "model.safetensors: cannot read weights")
    _one_line_error(run_cli_here("train", "--model-dir", corrupt, "--out", tmp_path / "runs", "--limit", "8"),
                    "model.safetensors: cannot read weights")


def _data_copy(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(REPO / "data", data)
    return data


def test_label_out_of_range_in_training_data(tiny_model_dir, tmp_path):
    data = _data_copy(tmp_path)
    lines = (data / "ids-sst-train.csv").read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].rsplit(b"\t", 1)[0] + b"\t7\n"
    (data / "ids-sst-train.csv").write_bytes(b"".join(lines))
    result = run_cli_here("train", "--model-dir", tiny_model_dir, "--data-dir", data, "--out", tmp_path / "runs")
    _one_line_error(result, "ids-sst-train.csv:4: label '7' is out of range 0-4 for sst")


def test_data_dir_without_the_expected_files(tiny_model_dir, tiny_export, tmp_path):
    data = _data_copy(tmp_path)
    (data / "sts-dev.csv").unlink()
    result = run_cli_here("train", "--model-dir", tiny_model_dir, "--data-dir", data, "--out", tmp_path / "runs")
    _one_line_error(result, "sts-dev.csv: not found; it is the dev file of task 'sts'")
    _one_line_error(run_cli_here("eval", "--data-dir", tmp_path / "empty", "--onnx", tiny_export), "empty: data folder not found")
    _one_line_error(run_cli_here("info", "--data-dir", tmp_path / "nowhere"), "nowhere: data folder not found")


def test_unwritable_output_is_one_line(tiny_export, tsv, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("score", "sts", tsv(b"sentence1\tsentence2\na\tb\n"), "--model", tiny_export, "-o", blocker / "out.tsv")
    _one_line_error(result, "file")
