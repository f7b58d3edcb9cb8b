"""mtcli.train.units: tasks that share a training file and an encoding are drawn and encoded
together, each task's loss from the rows it labels, each task's gradient its own row."""

import json
import os

import numpy as np
import pytest
import torch

from conftest import builtin, run_cli
from mtcli.core.data import read_split, read_splits
from mtcli.core.tasks import load_task_file
from mtcli.train.units import make_units, subsample
from mtcli.weightings import WEIGHTINGS

SHARED = """
[[task]]
name = "related"
kind = "regression"
text = ["sentence_A", "sentence_B"]
label = "relatedness_score"
range = [1, 5]
encoding = "cross"
train = "sick.tsv"
dev = "sick.tsv"

[[task]]
name = "entails"
kind = "multiclass"
text = ["sentence_A", "sentence_B"]
label = "entailment_judgment"
labels = ["NEUTRAL", "ENTAILMENT", "CONTRADICTION"]
encoding = "cross"
train = "sick.tsv"
dev = "sick.tsv"
"""


def _sick(folder, rows=40):
    """A SICK-shaped file whose rows label one task, the other, or both (partial labels)."""
    words = "a man dog woman plays runs guitar park ball child eats sleeps".split()
    lines = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"]
    for i in range(rows):
        score = "" if i % 5 == 0 else f"{1 + (i % 9) / 2:.1f}"
        judgment = "" if i % 7 == 0 else ["NEUTRAL", "ENTAILMENT", "CONTRADICTION"][i % 3]
        lines.append(f"{i}\t{words[i % 12]} {words[(i * 5) % 12]} {i}\t{words[(i * 7) % 12]} {words[i % 5]}\t"
                     f"{score}\t{judgment}")
    (folder / "sick.tsv").write_text("\n".join(lines) + "\n")
    (folder / "tasks.toml").write_text(SHARED)
    return folder / "tasks.toml"


def test_a_task_alone_draws_the_rows_it_drew_before():
    """--train-fraction on a one-task unit: relative sizes kept, seeded, rows in file order."""
    tasks = builtin()
    units = make_units(tasks, read_splits(tasks, "train"))
    sst, para = units["sst"], units["para"]
    a, b = subsample(sst, 0.1, seed=3), subsample(para, 0.1, seed=3)
    assert len(a) == round(0.1 * len(sst)) and len(b) == round(0.1 * len(para))
    assert set(a.texts) <= set(sst.texts) and a.texts == subsample(sst, 0.1, seed=3).texts
    assert subsample(sst, 0.1, seed=4).texts != a.texts and subsample(sst, 1.0, seed=3) is sst
    remaining = iter(sst.texts)
    assert all(any(t == u for u in remaining) for t in a.texts)  # a subsequence: the rows in file order


def test_tasks_on_one_file_with_one_encoding_are_one_unit(tmp_path):
    tasks = load_task_file(_sick(tmp_path))
    splits = read_splits(tasks, "train")
    assert len(splits["related"]) == 32 and splits["related"].unlabeled == 8   # rows 0, 5, 10, ... have no score
    units = make_units(tasks, splits)
    assert list(units) == ["related+entails"]
    unit = units["related+entails"]
    assert len(unit) == 40 - 2  # rows 0 and 35 label neither task: no row of the unit
    labeled = {t: sum(label is not None for label in unit.labels[t]) for t in unit.tasks}
    assert labeled == {"related": 32, "entails": 34}
    crossed = load_task_file(tmp_path / "tasks.toml")
    from dataclasses import replace

    crossed["entails"] = replace(crossed["entails"], encoding="siamese")  # another encoding: its own unit
    assert list(make_units(crossed, splits)) == ["related", "entails"]


def test_each_task_of_a_shared_forward_pass_gets_its_own_gradient(tmp_path, tiny_model_dir):
    """The step's rows equal each task's gradient computed alone on the rows it labels."""
    from rich.console import Console

    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    config = TrainConfig(model_dir=str(tiny_model_dir), tasks=str(_sick(tmp_path)), out=str(tmp_path / "runs"),
                         name="u", batch_size=16, dropout=0.0, combine="sum", max_steps=1)
    trainer = Trainer(config, Console(quiet=True))
    unit = trainer.units["related+entails"]
    indices = np.arange(16)
    phase = trainer.phase
    _, _, task_parts = trainer.train_step._forward(unit, indices, 0, "finetune")
    order = [task for task, _ in task_parts]
    for k, (task, parts) in enumerate(task_parts):   # one draw each: the task's whole batch, into its own row
        (_, share), = parts
        assert share == 1.0
        trainer.train_step._backward_rows(phase, parts, k, 1.0, last=k == len(task_parts) - 1)
    rows = phase.grads.used_rows().clone()
    phase.grads.reset()
    assert order == ["related", "entails"]
    model, shared = trainer.model, trainer.model.shared_parameters()
    for row, task in enumerate(order):
        keep = [int(i) for i in indices if unit.labels[task][i] is not None]
        from mtcli.core.encoding import encode

        inputs = {k: torch.from_numpy(v) for k, v in encode(trainer.tokenizer, unit.encoding,
                                                          [unit.texts[i] for i in keep]).items()}
        model.zero_grad(set_to_none=True)
        for p in shared:
            p.grad = None
        loss = model.loss(task, model(task, inputs), model.label_tensor(task, [unit.labels[task][i] for i in keep], "cpu"))
        loss.backward()
        alone = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in shared])
        assert torch.allclose(rows[row], alone, atol=1e-6, rtol=1e-5), (task, (rows[row] - alone).abs().max())


def test_shared_tasks_train_evaluate_and_report_from_the_command_line(tmp_path, tiny_model_dir):
    task_file = _sick(tmp_path)
    result = run_cli("train", "--tasks", task_file, "--model-dir", tiny_model_dir, "--out", tmp_path / "runs",
                     "--name", "s", "--batch-size", "8", "--epochs", "2", "--lr", "1e-3", "--combine", "upgrad")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    err = result.stderr.decode().replace("\n", " ")
    assert "sick.tsv: 8 rows have no relatedness_score" in err and "related+entails" in err
    steps = [json.loads(line) for line in (tmp_path / "runs" / "s" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["type"] == "step"]
    assert all(set(r["loss"]) == {"related", "entails"} for r in steps)  # both losses from every batch
    assert all(set(r["weights"]) == {"related", "entails"} for r in steps)  # two rows for the weighting
    result = json.loads((tmp_path / "runs" / "s" / "eval.json").read_text())
    assert set(result["tasks"]) == {"related", "entails"}
    assert len(read_split(load_task_file(task_file)["entails"], "dev")) == 34


# Each family's methods meet the declared tasks the same way; these cover each family, the
# two-sample MoDo and the loss-scaling GradNorm (MTCLI_EVERY_METHOD=1: every method)
DECLARED = list(WEIGHTINGS) if os.environ.get("MTCLI_EVERY_METHOD") else ["upgrad", "modo", "gradnorm", "famo", "moco"]


@pytest.mark.parametrize("combine", DECLARED)
def test_every_method_trains_on_a_declared_task_file(tmp_path, tiny_model_dir, combine):
    """Two tasks from one file and one forward pass, each labeling only some rows (a batch may hold
    a single row of a task: MoDo's two samples are then that row)."""
    from rich.console import Console

    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    config = TrainConfig(model_dir=str(tiny_model_dir), tasks=str(_sick(tmp_path, rows=24)), out=str(tmp_path / "runs"),
                         name="d", batch_size=4, epochs=1, max_steps=4, combine=combine,
                         task_weights={"related": 0.5, "entails": 1.0} if combine == "weighted" else {})
    run = Trainer(config, Console(quiet=True)).run()
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["type"] == "step"]
    assert len(steps) == 4 and all(np.isfinite(list(r["weights"].values())).all() for r in steps)
    assert all(set(r["weights"]) == set(r["loss"]) for r in steps)
    assert json.loads((run / "eval.json").read_text())["tasks"].keys() == {"related", "entails"}
