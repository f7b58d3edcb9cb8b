"""The command line as a user runs it: subprocesses, exit codes, one-line errors."""

import json

from conftest import run_cli


def test_info_reports_versions_backbone_data_and_the_weightings():
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert report["versions"]["mtcli"] and report["versions"]["torch"]
    assert report["backbone"]["layers"] == 6 and report["backbone"]["hidden"] == 384
    assert 22_000_000 < report["backbone"]["parameters"] < 23_000_000
    assert report["data"]["rows"]["sst"]["train"] == 8544
    assert report["native"]["kernel_backend"] in ("torch", "native-cpu")
    assert report["native"]["weightings"]["cagrad"] == "cagrad:c=0.4,norm_eps=0.0001"
    assert len(report["native"]["weightings"]) == len(report["native"]["families"]) >= 26
    assert report["native"]["families"]["uw"] == "losses" and report["native"]["families"]["config"] == "gram"
    table = run_cli("info")
    assert table.returncode == 0 and b"native-cpu" in table.stdout and b"nash-mtl" in table.stdout
    assert b"13,212" in table.stdout


def test_help_and_version():
    assert run_cli("--help").returncode == 0
    assert b"Examples" in run_cli("info", "--help").stdout
    assert run_cli("--version").stdout.decode().startswith("mtcli ")


def test_bad_model_dir_is_one_line_exit_2(tmp_path):
    result = run_cli("info", "--model-dir", tmp_path / "nope")
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtcli: error:") and "nope" in lines[0]
    assert b"Traceback" not in result.stderr


def test_training_without_a_terminal_prints_progress_lines(tiny_model_dir, tmp_path):
    """nohup, CI, a cluster job: a line every --progress-every seconds with step, losses, speed, ETA."""
    import re

    result = run_cli("train", "--model-dir", tiny_model_dir, "--out", tmp_path, "--name", "p", "--limit", "64",
                     "--batch-size", "8", "--max-steps", "12", "--lr", "1e-3", "--log-every", "1",
                     "--progress-every", "0.001")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    lines = [l for l in result.stderr.decode().splitlines() if l.startswith("step ")]
    assert len(lines) >= 5, result.stderr.decode()
    assert re.fullmatch(r"step \d+/12  epoch \d/3  para [\d.]+  sst [\d.]+  sts [\d.]+  \d+ ex/s  eta \d+s", lines[-1]), \
        lines[-1]
