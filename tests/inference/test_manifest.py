"""mtcli.inference.manifest: the manifest is validated whole when read, each graph is checked
against its entry when loaded, and every damage is one UserError naming the file."""

import json
import shutil

import pytest

from mtcli.core.errors import UserError
from mtcli.inference.manifest import export_files, read_manifest
from mtcli.inference.scorer import Scorer


@pytest.fixture()
def export_copy(tiny_export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(tiny_export, copy)
    return copy


def _edit(folder, change):
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("max_length"), "max_length: missing"),
    (lambda m: m.update(max_length="128"), "max_length: expected an integer, found a string"),
    (lambda m: m.update(pooling="max"), "pooling: 'max' is not one of cls, mean"),
    (lambda m: m.update(tasks=[]), "tasks: expected an object, found a list"),
    (lambda m: m.update(tasks={}), "tasks: no task"),
    (lambda m: m["tasks"].update(sst=None), "tasks.sst: expected an object, found null"),
    (lambda m: m["tasks"]["sst"]["task"].pop("kind"), "tasks.sst.task: task 'sst': kind: missing"),
    (lambda m: m["tasks"]["sst"]["task"].update(kind="ranking"), "task 'sst': kind: 'ranking' is not one of"),
    (lambda m: m["tasks"]["sst"].update(encoding="triple"), "tasks.sst.encoding: 'triple' is not how"),
    (lambda m: m["tasks"]["sst"].update(encoding="joint"), "tasks.sst.encoding: 'joint' is not how"),
    (lambda m: m["tasks"]["sst"]["task"].update(name="other"), "tasks.sst.task.name: 'other' is not the task's key"),
    (lambda m: m["tasks"]["sst"].pop("task"), "tasks.sst.task: missing"),
    (lambda m: m["tasks"]["sst"].update(inputs=["ids"]), "tasks.sst.inputs: ['ids'] are not the inputs"),
    (lambda m: m["tasks"]["sst"].update(output="logits"), "tasks.sst.output: 'logits' is not the output"),
    (lambda m: m["tasks"]["sst"]["task"].update(labels=["a"]), "task 'sst': labels: a multiclass task has at least 2"),
    (lambda m: m["tasks"]["para"]["task"].update(labels=["a", "a"]), "task 'para': labels: expected distinct"),
    (lambda m: m["tasks"]["sts"]["task"].update(range=[5, 0]), "task 'sts': range: expected [low, high]"),
    (lambda m: m["tasks"]["sst"].update(file="../sst.onnx"), "tasks.sst.file: '../sst.onnx' is not a file name"),
    (lambda m: m["tasks"]["sst"].update(file="gone.onnx"), "gone.onnx: not found, but manifest.json lists it"),
    (lambda m: m.update(tokenizer=7), "tokenizer: expected a string, found an integer"),
])
def test_damaged_manifest_is_one_error_naming_it(export_copy, change, message):
    _edit(export_copy, change)
    with pytest.raises(UserError) as caught:
        read_manifest(export_copy)
    assert message in str(caught.value) and str(export_copy) in str(caught.value)


def test_graph_swapped_for_another_tasks_is_refused(export_copy):
    shutil.copy(export_copy / "para.onnx", export_copy / "sst.onnx")
    with pytest.raises(UserError, match=r"sst.onnx: the graph's inputs .* are not the manifest's"):
        Scorer(export_copy, providers=["cpu"]).score("sst", ["a sentence"])
    _edit(export_copy, lambda m: m["tasks"]["sts"]["task"].update(kind="multiclass"))
    with pytest.raises(UserError, match="range: a classification task declares labels, not a range"):
        Scorer(export_copy, providers=["cpu"]).score("sts", [("a", "b")])


def test_label_count_is_checked_against_the_graph(export_copy):
    _edit(export_copy, lambda m: m["tasks"]["sst"]["task"].update(labels=["a", "b", "c"]))
    with pytest.raises(UserError, match=r"sst.onnx: output 'probabilities' has shape \['batch', 5\]"):
        Scorer(export_copy, providers=["cpu"]).score("sst", ["a sentence"])


def test_scoring_reads_labels_from_the_manifest(export_copy, tmp_path):
    """An export is scored with the label names it was written with, not today's code's."""
    from mtcli.inference.score import score_file

    names = ["awful", "bad", "meh", "good", "great"]
    _edit(export_copy, lambda m: m["tasks"]["sst"]["task"].update(labels=names))
    (tmp_path / "in.tsv").write_text("id\tsentence\nr1\tfine\n")
    score_file("sst", str(tmp_path / "in.tsv"), str(tmp_path / "out.tsv"), model_dir=export_copy, providers=["cpu"])
    assert (tmp_path / "out.tsv").read_text().splitlines()[0].split("\t") == ["id", "label", *(f"p_{n}" for n in names)]


def test_export_files_lists_what_an_export_holds(tiny_export, tmp_path):
    files = export_files(tiny_export)
    assert {"manifest.json", "tokenizer.json", "sst.onnx", "sst.int8.onnx", "eval.json"} <= files
    assert export_files(tmp_path) is None
