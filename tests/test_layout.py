"""The architecture, checked: torch-free parts (and the weightings but for their kernel
wrapper) never import torch (scoring, ONNX eval and the
run report run with torch made unimportable), and no module outside the task and head
modules looks at what a task is called."""

import ast
import os
import re
import subprocess
import sys

import pytest

from conftest import BLOCK_TORCH, REPO

PACKAGE = REPO / "mtcli"
TORCH_FREE = ("core", "run", "inference", "eval")
# Only the task declarations and the heads may know a task by name.
TASK_NAMES = re.compile(r"""["'](sst|para|sts|cfimdb)["']|task(_name)?\s*(==|!=|in)\s*[("'\[]""")
OWNERS = {PACKAGE / "core" / "tasks.py", PACKAGE / "model" / "heads.py"}

def test_no_module_branches_on_a_task_name():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in OWNERS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if TASK_NAMES.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_torch_free_packages_import_no_torch():
    modules = [f"mtcli.{folder}.{p.stem}" for folder in TORCH_FREE for p in sorted((PACKAGE / folder).glob("*.py"))
               if p.stem != "__init__"]
    # the weightings are host arithmetic on the Gram matrix; only their kernel wrapper touches tensors
    modules += ["mtcli.weightings"] + [f"mtcli.weightings.{p.stem}" for p in sorted((PACKAGE / "weightings").glob("*.py"))
                                       if p.stem not in ("__init__", "kernel")]
    code = BLOCK_TORCH + "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + \
        "import mtcli.cli.score, mtcli.cli.report, mtcli.cli.eval\nprint('ok', len(sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and b"ok" in done.stdout, done.stderr.decode()[-2000:]


def _cli_without_torch(*args, cwd=REPO):
    code = BLOCK_TORCH + f"sys.argv = ['mtcli', *{[str(a) for a in args]!r}]\nfrom mtcli.cli import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"})


@pytest.mark.parametrize("command", ["score", "eval --onnx", "report"])
def test_commands_that_need_no_torch_run_without_it(command, tiny_export, tiny_checkpoint, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("id\tsentence1\tsentence2\nr1\tA dog runs.\tA dog is running.\n")
    args = {"score": ["score", "sts", pairs, "--model", tiny_export, "-o", tmp_path / "out.tsv"],
            "eval --onnx": ["eval", "--onnx", tiny_export, "--limit", "20", "--out", tmp_path / "eval"],
            "report": ["report", tiny_checkpoint.parent]}[command]
    done = _cli_without_torch(*args)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_the_version_is_stated_once_in_code_and_agrees_with_pyproject():
    import tomllib

    from mtcli import __version__

    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] == __version__
    stated = [p for p in PACKAGE.rglob("*.py") if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert stated == [PACKAGE / "core" / "version.py"]


# a run file's name where code uses it: a path joined with it, a set or tuple of names, an assignment
RUN_FILES = re.compile(r"""(/|[{(,=])\s*["'](config\.json|eval\.json|metrics\.jsonl|recipe\.toml|data\.json|"""
                       r"""report\.json|tracking\.json|dev-predictions\.safetensors)["']""")
# folders of other formats that hold a file of the same name (an HF model's config.json)
OTHER_FORMATS = {PACKAGE / "model", PACKAGE / "export", PACKAGE / "core" / "backbones.py", PACKAGE / "info.py"}


def test_only_the_run_folder_module_spells_a_run_file_s_name():
    owner = PACKAGE / "run" / "folder.py"
    spelled = []
    for path in PACKAGE.rglob("*.py"):
        if path == owner or path in OTHER_FORMATS or path.parent in OTHER_FORMATS:
            continue
        text = path.read_text()
        body = ast.parse(text).body
        docstring = body[0].end_lineno if body and isinstance(body[0], ast.Expr) else 0   # the module's prose
        code = "\n".join(line for number, line in enumerate(text.splitlines(), 1)
                         if number > docstring and not line.lstrip().startswith("#"))
        spelled += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in RUN_FILES.finditer(code)]
    assert not spelled, spelled
