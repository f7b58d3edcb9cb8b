"""mtcli.eval.evaluate as a Python API: a checkpoint (torch) and its export (onnxruntime)
evaluated without the CLI, to the same metrics, saved as `mtcli eval` saves them."""

import json

import pytest

from conftest import builtin
from mtcli.core.errors import UserError
from mtcli.eval.evaluate import evaluate_checkpoint, evaluate_onnx


def test_a_checkpoint_and_its_export_evaluate_alike_from_python(tiny_checkpoint, tiny_export, tmp_path):
    torch_found = evaluate_checkpoint(tiny_checkpoint, limit=40, device="cpu")
    onnx_found = evaluate_onnx(tiny_export, limit=40, providers=["cpu"])
    assert torch_found.backend["backend"] == "torch" and len(torch_found.backend["checkpoint_sha256"]) == 64
    assert onnx_found.backend == {"backend": "onnxruntime"}
    for task, spec in builtin().items():
        assert onnx_found.results["tasks"][task][spec.metric] == pytest.approx(
            torch_found.results["tasks"][task][spec.metric], abs=1e-3)
        assert len(torch_found.predictions[task]) == len(torch_found.splits[task].examples) == 40
    written = torch_found.save(tmp_path)
    assert [p.name for p in written] == ["eval.json"]
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["overall"] == pytest.approx(torch_found.results["overall"]) and saved["backend"] == "torch"
    assert torch_found.analysis and set(saved["analysis"]) == set(torch_found.analysis)


def test_a_test_split_saves_prediction_files(tiny_checkpoint, tmp_path):
    found = evaluate_checkpoint(tiny_checkpoint, split="test", limit=10, device="cpu")
    written = {p.name for p in found.save(tmp_path)}
    assert {"sst-test-output.csv", "para-test-output.csv", "sts-test-output.csv"} <= written
    assert found.unlabeled == ["sst", "para", "sts"] and found.results is None


def test_an_unknown_split_is_refused_before_loading(tmp_path):
    with pytest.raises(UserError, match="--split 'train' is not one of dev, test"):
        evaluate_checkpoint(tmp_path / "nowhere", split="train")
