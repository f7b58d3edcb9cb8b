"""Multitask distillation (BAM!): the targets against literal references, teacher annealing,
teachers from an export and from a checkpoint, labels computed once and reused (resume, a
sibling run), exact resume, refusals of teachers that do not fit, every method family."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from conftest import builtin, crashed_at, one_line_error, run_cli_here
from mtcli.core.errors import UserError
from mtcli.inference.scorer import Scorer
from mtcli.model.heads import make_head
from mtcli.run.folder import TEACHER_LABELS
from mtcli.train import TrainConfig
from mtcli.train.distillation import Annealing
from mtcli.train.loop import Trainer
from mtcli.run.teacher_labels import read_labels
from mtcli.train.teacher import Teacher

QUIET = Console(quiet=True)


# ---------------------------------------------------------------------- targets, literally


def test_multiclass_target_mixes_one_hot_and_teacher():
    head = make_head(builtin("sst"), width=8, dropout=0.0)
    teacher = np.array([[0.1, 0.2, 0.3, 0.2, 0.2], [0.5, 0.1, 0.1, 0.1, 0.2]])
    target = head.target([2, None], teacher, gold_weight=0.25, temperature=1.0, device="cpu").numpy()
    expected_first = 0.25 * np.array([0, 0, 1, 0, 0]) + 0.75 * teacher[0]
    np.testing.assert_allclose(target[0], expected_first, atol=1e-7)
    np.testing.assert_allclose(target[1], teacher[1], atol=1e-7)   # no gold label: the teacher's alone
    assert target.sum(axis=1) == pytest.approx([1.0, 1.0])


def test_temperature_divides_the_teachers_logits():
    head = make_head(builtin("sst"), width=8, dropout=0.0)
    logits = np.array([2.0, 1.0, 0.0, -1.0, 0.5])
    probabilities = np.exp(logits) / np.exp(logits).sum()
    soft = head.target([None], probabilities[None], 0.0, temperature=2.0, device="cpu").numpy()[0]
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum()
    np.testing.assert_allclose(soft, expected, atol=1e-6)
    sharp = head.target([None], probabilities[None], 0.0, temperature=0.5, device="cpu").numpy()[0]
    assert sharp.max() > probabilities.max() > soft.max()


def test_binary_target_and_its_temperature():
    head = make_head(builtin("para"), width=8, dropout=0.0)
    p = np.array([0.8, 0.3])
    target = head.target([1.0, 0.0], p, gold_weight=0.5, temperature=1.0, device="cpu").numpy()
    np.testing.assert_allclose(target, [0.5 * 1 + 0.5 * 0.8, 0.5 * 0 + 0.5 * 0.3], atol=1e-7)
    softened = head.target([None], np.array([0.8]), 0.0, temperature=2.0, device="cpu").numpy()
    logit = math.log(0.8 / 0.2)
    assert softened[0] == pytest.approx(1 / (1 + math.exp(-logit / 2)), abs=1e-6)


def test_regression_target_has_no_temperature():
    head = make_head(builtin("sts"), width=8, dropout=0.0)
    target = head.target([4.0, None], np.array([2.0, 3.5]), gold_weight=0.75, temperature=3.0, device="cpu").numpy()
    np.testing.assert_allclose(target, [0.75 * 4 + 0.25 * 2, 3.5], atol=1e-6)


def test_the_heads_losses_take_soft_targets():
    """Cross-entropy against a distribution, BCE against a probability: at gold weight 1 the
    distillation target is the gold label, and so is the loss."""
    sst = make_head(builtin("sst"), width=8, dropout=0.0)
    logits = torch.randn(3, 5)
    target = sst.target([0, 4, 2], np.full((3, 5), 0.2), 1.0, 1.0, "cpu")
    assert sst.loss(logits, target).item() == pytest.approx(sst.loss(logits, torch.tensor([0, 4, 2])).item(), abs=1e-6)


def test_annealing_schedules():
    linear = Annealing.parse("linear")
    assert [linear.gold_weight(s, 10) for s in (0, 5, 10)] == [0.0, 0.5, 1.0]
    assert Annealing.parse("constant:0.3").gold_weight(7, 10) == 0.3
    for bad in ("cosine", "constant", "constant:1.5", "constant:nan", "linear:0.2"):
        with pytest.raises(UserError, match="--teacher-annealing"):
            Annealing.parse(bad)


# ---------------------------------------------------------------------- training with a teacher


def _config(tmp_path, model_dir, name, teacher, **overrides):
    values = dict(model_dir=str(model_dir), out=str(tmp_path / "runs"), name=name, limit=24, batch_size=8,
                  epochs=2, lr=1e-3, sampler="proportional", teacher=[str(t) for t in teacher], dropout=0.0)
    return TrainConfig(**{**values, **overrides})


def test_an_export_teaches_every_task_and_its_labels_are_kept(tmp_path, tiny_model_dir, tiny_export):
    trainer = Trainer(_config(tmp_path, tiny_model_dir, "student", [tiny_export]), QUIET)
    run = trainer.run()
    labels = read_labels(run / TEACHER_LABELS, trainer.tasks)
    assert set(labels) == {"sst", "para", "sts"}
    scorer = Scorer(tiny_export, providers=("cpu",))
    for name, unit in trainer.units.items():   # the export's own predictions of the unit's rows
        np.testing.assert_allclose(labels[name].values, scorer.score(name, unit.texts), atol=1e-6)
        np.testing.assert_array_equal(unit.teacher[name], labels[name].values)
    steps = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"step"' in l]
    assert all(math.isfinite(v) for r in steps if r["type"] == "step" for v in r["loss"].values())


def _only_spot_checks(monkeypatch) -> None:
    """The teacher may predict the few rows a reuse draws to check the labels, never label a unit again."""
    from mtcli.train import teacher as teacher_module

    monkeypatch.setattr(teacher_module, "_label", lambda *a, **k: pytest.fail("labelled again"))


def test_a_second_run_reuses_its_siblings_labels(tmp_path, tiny_model_dir, tiny_export, monkeypatch):
    first = Trainer(_config(tmp_path, tiny_model_dir, "first", [tiny_export], max_steps=1), QUIET).run()
    _only_spot_checks(monkeypatch)
    second = Trainer(_config(tmp_path, tiny_model_dir, "second", [tiny_export], max_steps=1, seed=3), QUIET)
    second.run()
    a = load_file(first / TEACHER_LABELS)
    b = load_file(second.run_dir / TEACHER_LABELS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)



def test_a_siblings_file_is_read_only_for_the_entries_that_fit(tmp_path):
    """Another run's labels file may hold many tasks' labels and embeddings: its header decides
    which entries fit, and only theirs are read (a damaged entry that does not fit is never read)."""
    from mtcli.run.teacher_labels import Labels, write_labels

    tasks = builtin()
    sst = np.full((4, 5), 0.2, dtype=np.float32)
    sts = np.array([0.5, 6.0, 2.0], dtype=np.float32)   # 6.0 leaves [0, 5]: read, this entry is refused
    path = write_labels(tmp_path / TEACHER_LABELS, {
        "sst": Labels("t" * 64, "r" * 64, "/teacher", sst, np.ones((4, 1, 8), dtype=np.float32)),
        "sts": Labels("t" * 64, "other", "/teacher", sts)})
    seen_entries = []

    def fits(name, entry):
        seen_entries.append((name, entry["count"], entry["embeddings"]))
        return entry["rows"] == "r" * 64

    labels = read_labels(path, {"sst": tasks["sst"], "sts": tasks["sts"]}, accept=fits)
    assert sorted(seen_entries) == [("sst", 4, True), ("sts", 3, False)]
    assert list(labels) == ["sst"] and labels["sst"].embeddings.shape == (4, 1, 8)
    np.testing.assert_array_equal(labels["sst"].values, sst)
    with pytest.raises(UserError, match="leave"):   # read whole, the damaged entry is found
        read_labels(path, {"sst": tasks["sst"], "sts": tasks["sts"]})


def _task_file(tmp_path, names) -> Path:
    """The built-in task file with only `names` (read from --data-dir)."""
    from mtcli.core.tasks import BUILTIN_TASK_FILE

    blocks = BUILTIN_TASK_FILE.read_text().split("[[task]]")[1:]
    path = tmp_path / f"{'-'.join(names)}.toml"
    path.write_text("".join("[[task]]" + b for b in blocks if any(f'name = "{n}"' in b for n in names)))
    return path


def test_one_teacher_per_task_labels_its_own_task(tmp_path, tiny_model_dir):
    """BAM's single-task teachers: each task's rows labelled by its own teacher, a checkpoint here."""
    from conftest import REPO

    data = str(REPO / "data")
    teachers = {}
    for names in (["sst", "para"], ["sts"]):
        config = _config(tmp_path, tiny_model_dir, "teacher-" + "-".join(names), [], max_steps=2,
                         tasks=str(_task_file(tmp_path, names)), data_dir=data)
        teachers[tuple(names)] = Trainer(config, QUIET).run() / "best"
    trainer = Trainer(_config(tmp_path, tiny_model_dir, "student", list(teachers.values()), max_steps=2,
                              teacher_temperature=2.0, teacher_annealing="constant:0.5"), QUIET)
    run = trainer.run()
    labels = read_labels(run / TEACHER_LABELS, trainer.tasks)
    assert {name: l.source for name, l in labels.items()} == {
        "sst": str(teachers[("sst", "para")]), "para": str(teachers[("sst", "para")]), "sts": str(teachers[("sts",)])}


def test_a_task_without_a_teacher_trains_on_its_gold_labels(tmp_path, tiny_model_dir):
    from conftest import REPO

    config = _config(tmp_path, tiny_model_dir, "teacher", [], max_steps=2, tasks=str(_task_file(tmp_path, ["sts"])),
                     data_dir=str(REPO / "data"))
    teacher = Trainer(config, QUIET).run()   # a run folder: its best/ teaches
    trainer = Trainer(_config(tmp_path, tiny_model_dir, "student", [teacher], max_steps=2), QUIET)
    trainer.run()
    assert set(trainer.teacher_labels) == {"sts"}
    assert {name: set(unit.teacher) for name, unit in trainer.units.items()} == {"sst": set(), "para": set(),
                                                                                  "sts": {"sts"}}


def test_resume_with_a_teacher_is_bit_identical(tmp_path, tiny_model_dir, tiny_export, monkeypatch):
    straight = Trainer(_config(tmp_path, tiny_model_dir, "straight", [tiny_export], save_every=2), QUIET)
    straight.run()
    interrupted = crashed_at(_config(tmp_path, tiny_model_dir, "interrupted", [tiny_export], save_every=2), QUIET, 5)
    _only_spot_checks(monkeypatch)
    Trainer.resume(interrupted.run_dir, QUIET).run()
    a, b = load_file(straight.run_dir / "last" / "model.safetensors"), load_file(interrupted.run_dir / "last" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_teacher_that_changed(tmp_path, tiny_model_dir, tiny_export):
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_export, teacher)
    run = crashed_at(_config(tmp_path, tiny_model_dir, "run", [teacher], save_every=2), QUIET, 3).run_dir
    (teacher / "README.md").write_text("an evaluation's notes beside the graphs\n")   # not what it predicts with
    (teacher / "eval.json").write_text("{}\n")
    assert Trainer.resume(run, QUIET).position.step > 0   # resumes: the teacher it predicts with is unchanged
    manifest = json.loads((teacher / "manifest.json").read_text())
    (teacher / "manifest.json").write_text(json.dumps(manifest, indent=4))   # the same manifest, other bytes
    result = run_cli_here("train", "--resume", run)
    one_line_error(result, str(teacher), "changed since it labelled", "restore it")


def test_resume_refuses_damaged_labels(tmp_path, tiny_model_dir, tiny_export):
    run = crashed_at(_config(tmp_path, tiny_model_dir, "run", [tiny_export], save_every=2), QUIET, 3).run_dir
    (run / TEACHER_LABELS).write_bytes(b"\x00" * 40)
    result = run_cli_here("train", "--resume", run)
    one_line_error(result, str(run / TEACHER_LABELS), "damaged")


@pytest.mark.parametrize("combine", ["pcgrad", "upgrad", "moco", "famo", "modo", "dwa"])
def test_every_family_trains_on_distillation_targets(tmp_path, tiny_model_dir, tiny_export, combine):
    """gram (pcgrad, upgrad; modo draws two samples of each task), rows (moco), losses (famo,
    with its forward after the update; dwa): the distillation loss is each task's loss."""
    run = Trainer(_config(tmp_path, tiny_model_dir, combine, [tiny_export], max_steps=3, combine=combine), QUIET).run()
    steps = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["type"] == "step"]
    assert len(steps) == 3 and all(math.isfinite(v) for r in steps for v in r["loss"].values())


@pytest.mark.parametrize("sampler", ["proportional", "temperature", "annealed", "round-robin", "triple-batch"])
def test_every_sampler_draws_distillation_targets(tmp_path, tiny_model_dir, tiny_export, sampler):
    run = Trainer(_config(tmp_path, tiny_model_dir, sampler, [tiny_export], max_steps=2, sampler=sampler), QUIET).run()
    steps = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in steps if r["type"] == "step"]) == 2


# ---------------------------------------------------------------------- refusals


def _sst_as(tmp_path, name: str, labels: list[str]) -> Path:
    """A task file declaring SST's files as task `name` with classes `labels`."""
    sst = builtin("sst")
    path = tmp_path / f"{name}.toml"
    path.write_text(f'''[[task]]
name = "{name}"
kind = "multiclass"
text = ["sentence"]
label = "sentiment"
labels = {json.dumps(labels)}
train = "{sst.file("train")}"
dev = "{sst.file("dev")}"
''')
    return path


def test_teachers_that_do_not_fit_are_refused(tmp_path, tiny_model_dir, tiny_export, tiny_checkpoint):
    tasks = _sst_as(tmp_path, "sst", ["a", "b", "c", "d", "e"])
    cases = [
        (["--teacher", tmp_path / "nowhere"], ["nowhere", "not found", "--teacher takes a model folder"]),
        (["--teacher", f"{tiny_export},{tiny_checkpoint}"], ["task 'sst' has two teachers"]),
        (["--tasks", tasks, "--teacher", tiny_export], [str(tiny_export), "classes", "a teacher must predict"]),
        (["--teacher-annealing", "constant:0.5"], ["--teacher-annealing", "pass --teacher"]),
        (["--teacher", tiny_export, "--teacher-temperature", "0"], ["--teacher-temperature 0", "between 0.01 and 1000"]),
        (["--teacher", tiny_export, "--teacher-annealing", "cosine"], ["--teacher-annealing", "linear"]),
        (["--teacher", tiny_model_dir], [str(tiny_model_dir), "not an mtcli model"]),
    ]
    for args, fragments in cases:
        result = run_cli_here("train", "--model-dir", tiny_model_dir, "--out", tmp_path / "runs", "--limit", "8",
                              "--max-steps", "1", *args)
        one_line_error(result, *fragments)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_teacher_of_none_of_the_tasks_is_refused(tmp_path, tiny_model_dir, tiny_export):
    tasks = _sst_as(tmp_path, "mood", ["0", "1", "2", "3", "4"])
    result = run_cli_here("train", "--model-dir", tiny_model_dir, "--out", tmp_path / "runs", "--tasks", tasks,
                          "--teacher", tiny_export, "--limit", "8", "--max-steps", "1")
    one_line_error(result, str(tiny_export), "teaches none of the run's tasks (mood)")


# ---------------------------------------------------------------------- unlabeled text


def _sst_with_unlabeled(tmp_path, rows: list[str]) -> Path:
    """SST declared with an unlabeled file of `rows` (a TSV with a sentence column)."""
    import csv

    sst = builtin("sst")
    with open(tmp_path / "extra.tsv", "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["sentence"])
        writer.writerows([r] for r in rows)
    path = tmp_path / "sst.toml"
    path.write_text(f'''[[task]]
name = "sst"
kind = "multiclass"
text = ["sentence"]
label = "sentiment"
labels = {list(sst.labels)!r}
train = "{sst.file("train")}"
dev = "{sst.file("dev")}"
test = "{sst.file("test")}"
unlabeled = ["extra.tsv"]
'''.replace("'", '"'))
    return path


def test_unlabeled_text_is_labelled_by_the_teacher_and_trained_on(tmp_path, tiny_model_dir, tiny_export):
    fresh = ["A film nobody should miss.", "Two hours I will not get back.", "It is fine, I suppose."]
    tasks = _sst_with_unlabeled(tmp_path, fresh)
    trainer = Trainer(_config(tmp_path, tiny_model_dir, "student", [tiny_export], tasks=str(tasks), max_steps=2), QUIET)
    unit = trainer.units["sst"]
    assert unit.texts[-3:] == [(s,) for s in fresh] and unit.labels["sst"][-3:] == [None] * 3
    assert len(unit) == 24 + 3 and len(unit.teacher["sst"]) == len(unit)
    expected = Scorer(tiny_export, providers=("cpu",)).score("sst", fresh)
    np.testing.assert_allclose(unit.teacher["sst"][-3:], expected, atol=1e-6)
    target = trainer.train_step._target(unit, "sst", [len(unit) - 1], step=trainer.total_steps - 1)
    np.testing.assert_allclose(target.numpy()[0], expected[-1], atol=1e-6)   # no gold: the teacher's, at any step
    run = trainer.run()
    record = json.loads((run / "data.json").read_text())
    assert record["unlabeled"]["sst"][0]["path"] == str((tmp_path / "extra.tsv").resolve())
    from mtcli.export.onnx import export

    export(run / "best", tmp_path / "export", task_file=str(tasks))   # its model card names the unlabeled file
    card = (tmp_path / "export" / "README.md").read_text()
    assert f"| sst | unlabeled (a teacher's labels) | extra.tsv | `{record['unlabeled']['sst'][0]['sha256']}` |" in card
    assert str(tiny_export) in card   # the recipe: its teacher


def test_unlabeled_text_that_overlaps_dev_or_test_is_refused(tmp_path, tiny_model_dir, tiny_export):
    from mtcli.core.data import read_split

    dev = [ex.texts[0] for ex in read_split(builtin("sst"), "dev").examples[:2]]
    test = [ex.texts[0] for ex in read_split(builtin("sst"), "test").examples[:1]]
    tasks = _sst_with_unlabeled(tmp_path, ["Nothing to see here.", *dev, *test])
    result = run_cli_here("train", "--model-dir", tiny_model_dir, "--out", tmp_path / "runs", "--tasks", tasks,
                          "--teacher", tiny_export, "--limit", "8", "--max-steps", "1")
    one_line_error(result, f"{tmp_path / 'extra.tsv'}:3:", "3 of its 4 rows share a sentence", "dev or test split")


def test_unlabeled_files_are_read_only_with_a_teacher(tmp_path, tiny_model_dir):
    tasks = _sst_with_unlabeled(tmp_path, ["A film nobody should miss."])
    console = Console(record=True, width=200)
    trainer = Trainer(_config(tmp_path, tiny_model_dir, "alone", [], tasks=str(tasks), max_steps=1), console)
    assert len(trainer.units["sst"]) == 24
    assert "its unlabeled files are read only when a teacher labels them" in console.export_text()


def test_resume_refuses_an_edited_unlabeled_file(tmp_path, tiny_model_dir, tiny_export):
    tasks = _sst_with_unlabeled(tmp_path, ["A film nobody should miss.", "Dull."])
    run = crashed_at(_config(tmp_path, tiny_model_dir, "run", [tiny_export], tasks=str(tasks), save_every=2),
                     QUIET, 3).run_dir
    with open(tmp_path / "extra.tsv", "a") as fh:
        fh.write("One more.\n")
    result = run_cli_here("train", "--resume", run)
    one_line_error(result, str(tmp_path / "extra.tsv"), "changed since the run read it as an unlabeled file")


# ---------------------------------------------------------------------- embeddings


def test_embedding_distillation_projects_only_where_widths_differ():
    from mtcli.train.objectives import EmbeddingDistillation

    distiller = EmbeddingDistillation(4, {4, 6})
    assert list(distiller.projections) == ["6"]
    student, teacher = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    assert distiller(student, teacher).item() == pytest.approx(((student - teacher) ** 2).mean().item(), rel=1e-6)
    wide = torch.randn(3, 2, 6)
    projected = distiller.projections["6"](student)
    assert distiller(student, wide).item() == pytest.approx(((projected - wide) ** 2).mean().item(), rel=1e-6)


@pytest.fixture(scope="module")
def narrow_model_dir(tmp_path_factory, packaged_model_dir):
    """A random 16-wide BERT: a student narrower than the tiny teachers (32)."""
    from mtcli.core.tokenizer import Tokenizer
    from mtcli.model import BertConfig, MinBert

    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("narrow-bert")
    MinBert(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       max_position_embeddings=256)).save_pretrained(out)
    Tokenizer.from_dir(packaged_model_dir).save(out)
    return out


def test_distilled_embeddings_train_a_projection_that_no_export_holds(tmp_path, narrow_model_dir, tiny_export):
    """Every encoding: para cross (its sentences encoded on their own), sts cosine (the pair's two
    embeddings reused), sst one sentence."""
    config = _config(tmp_path, narrow_model_dir, "embed", [tiny_export], max_steps=3, distill_embeddings=0.5,
                     encodings={"para": "cross"})
    trainer = Trainer(config, QUIET)
    assert list(trainer.distiller.projections) == ["32"]
    before = trainer.distiller.projections["32"].weight.detach().clone()
    run = trainer.run()
    assert not torch.equal(before, trainer.distiller.projections["32"].weight)   # it trained
    steps = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    logged = {k for r in steps if r["type"] == "step" for k in r["loss"]}
    assert {"sst:embed", "para:embed", "sts:embed"} <= logged
    labels = read_labels(run / TEACHER_LABELS, trainer.tasks)
    scorer = Scorer(tiny_export, providers=("cpu",))
    para = trainer.units["para"]
    expected = scorer.embed([para.texts[0][0], para.texts[0][1]])
    np.testing.assert_allclose(labels["para"].embeddings[0], expected, atol=2e-3, rtol=2e-3)   # kept as float16
    assert not any("projection" in k for k in load_file(run / "best" / "model.safetensors"))


def test_resume_with_distilled_embeddings_is_bit_identical(tmp_path, narrow_model_dir, tiny_export):
    def config(name):
        return _config(tmp_path, narrow_model_dir, name, [tiny_export], save_every=2, distill_embeddings=1.0)

    straight = Trainer(config("straight"), QUIET)
    straight.run()
    interrupted = crashed_at(config("interrupted"), QUIET, 5)
    resumed = Trainer.resume(interrupted.run_dir, QUIET)
    resumed.run()
    a, b = load_file(straight.run_dir / "last" / "model.safetensors"), load_file(interrupted.run_dir / "last" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(x, y) for x, y in zip(straight.distiller.state_dict().values(),
                                                 resumed.distiller.state_dict().values()))


def test_distill_embeddings_needs_a_teacher(tmp_path, tiny_model_dir):
    result = run_cli_here("train", "--model-dir", tiny_model_dir, "--out", tmp_path, "--distill-embeddings", "0.5")
    one_line_error(result, "--distill-embeddings", "pass --teacher")
