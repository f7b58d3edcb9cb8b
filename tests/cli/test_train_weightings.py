"""Methods train from the command line, with their parameters spelled as users spell them, and
`mtcli report` shows each task's weight over the run: each family's first method and a few more
(MTCLI_EVERY_METHOD=1: every method, with the parameters of SPECS; every method trains through
the same Trainer in tests/train/test_training.py)."""

import os

import json

import pytest

from conftest import run_cli
from mtcli.weightings import WEIGHTINGS

SPECS = {name: name for name in WEIGHTINGS}
SPECS.update({"cagrad": "cagrad:c=0.2", "gradvac": "gradvac:beta=0.5", "fairgrad": "fairgrad:alpha=2",
              "nash-mtl": "nash-mtl:optim_niter=5", "aligned-mtl": "aligned-mtl:scale=median",
              "mgda": "mgda:max_iters=50", "gradnorm": "gradnorm:alpha=1", "moco": "moco:beta=0.4",
              "sdmgrad": "sdmgrad:lambda=0.5", "famo": "famo:lr=0.05", "modo": "modo:gamma=0.05"})
SAMPLER = {name: ["proportional", "annealed", "round-robin", "triple-batch", "temperature:tau=3"][i % 5]
           for i, name in enumerate(WEIGHTINGS)}
# `mtcli report` on the first method of each family (the weights plot is drawn the same way for all)
REPORTED = {next(n for n, cls in WEIGHTINGS.items() if cls.family == family)
            for family in {cls.family for cls in WEIGHTINGS.values()}}


# By default: each family's first method (reported), weighted (task weights from the command line)
# and MoDo (two samples a task, with a parameter); spec parsing for every method is
# tests/weightings/test_weightings.py's, training every method tests/train/test_training.py's
CLI_METHODS = list(WEIGHTINGS) if os.environ.get("MTCLI_EVERY_METHOD") else \
    [n for n in WEIGHTINGS if n in REPORTED or n in ("weighted", "modo")]


@pytest.mark.parametrize("name", CLI_METHODS)
def test_weighting_trains_from_the_cli(name, tiny_model_dir, tmp_path):
    args = ["train", "--model-dir", tiny_model_dir, "--out", tmp_path, "--name", "run", "--limit", "24",
            "--batch-size", "8", "--max-steps", "3", "--epochs", "1", "--combine", SPECS[name],
            "--sampler", SAMPLER[name]]
    if name == "weighted":
        args += ["--task-weights", "sst=0.5,para=1,sts=2"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["combine"] == SPECS[name]
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "step"]
    assert len(steps) == 3 and all(r["weights"] for r in steps)
    if name in REPORTED:
        report = run_cli("report", tmp_path / "run")
        assert report.returncode == 0 and b"weight of each task's gradient" in report.stdout
