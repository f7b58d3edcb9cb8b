"""int8 export: which node family stays fp32 is measured on dev for each export, and the files
on disk are the chosen family's."""

import re
import shutil

import onnx
import pytest

from mtcli.export import onnx as onnx_export
from mtcli.export.onnx import INT8_FP32_CANDIDATES, _choose, _least_loss, _quantize_int8
from mtcli.inference.manifest import read_manifest
from mtcli.model.checkpoint import checkpoint_data, load_checkpoint


def kept_fp32(graph_path) -> list[str]:
    """Names of the int8 graph's MatMuls left fp32 that belong to a candidate family."""
    patterns = [p for family in INT8_FP32_CANDIDATES.values() for p in family]
    return [n.name for n in onnx.load(str(graph_path)).graph.node
            if n.op_type == "MatMul" and any(re.search(p, n.name) for p in patterns)]


def assert_files_keep(export_dir, manifest, family, layers=2):
    for entry in [*manifest["tasks"].values(), manifest["embedding"]]:
        names = kept_fp32(export_dir / entry["int8_file"])
        assert len(names) == (0 if family == "nothing" else layers), (entry["int8_file"], names)
        assert all(any(re.search(p, name) for p in INT8_FP32_CANDIDATES[family]) for name in names), (family, names)


def test_the_family_that_loses_least_on_dev_is_kept(tiny_export):
    manifest = read_manifest(tiny_export)
    report, chosen = manifest["int8_dev"], manifest["int8_kept_fp32"]
    assert set(report["candidates"]) == set(INT8_FP32_CANDIDATES)
    assert chosen == _choose(report["candidates"])
    assert report["change"] == report["candidates"][chosen]
    for task, change in report["change"]["tasks"].items():
        assert change == pytest.approx(report["int8"]["headline"][task] - report["fp32"]["headline"][task])
    assert report["change"]["overall"] == pytest.approx(report["int8"]["overall"] - report["fp32"]["overall"])
    assert_files_keep(tiny_export, manifest, chosen)


def test_worst_task_first_then_overall():
    """The figures measured on real models (BENCHMARKS.md, "int8: which nodes stay fp32")."""
    def change(overall, **tasks):
        return {"tasks": tasks, "overall": overall}

    minilm = {"ffn_in": change(0.0015, sst=0.0009, para=0.0040, sts=-0.0007),
              "ffn_out": change(-0.0029, sst=-0.0100, para=0.0017, sts=-0.0006)}
    mpnet_sst = {"ffn_in": change(-0.0318, sst=-0.0318), "ffn_out": change(-0.0082, sst=-0.0082)}
    assert _least_loss(minilm) == "ffn_in"
    assert _least_loss(mpnet_sst) == "ffn_out"
    level = {"a": change(-0.005, sst=-0.01, sts=0.0), "b": change(-0.003, sst=-0.01, sts=0.004)}
    assert _least_loss(level) == "b"  # the same worst task: the better overall
    assert _least_loss({"a": level["a"], "c": change(-0.005, sst=-0.01, sts=0.0)}) == "a"  # a tie: the first listed
    undefined = change(None, sst=None, sts=-0.002)  # a metric undefined on a tiny dev set
    assert _least_loss({"a": change(-0.001, sst=-0.003, sts=0.0), "u": undefined}) == "u"


def test_nothing_fp32_is_kept_at_equal_dev_quality():
    """The fastest candidate wins when its worst task is within a quarter point of the best's
    (BENCHMARKS.md's figures: MiniLM all quantized loses 1.27 on SST, the second MPNet SST
    teacher's loses no more than with ffn_in kept)."""
    def change(overall, **tasks):
        return {"tasks": tasks, "overall": overall}

    minilm = {"ffn_in": change(0.0015, sst=0.0009, para=0.0040, sts=-0.0007),
              "ffn_out": change(-0.0029, sst=-0.0100, para=0.0017, sts=-0.0006),
              "nothing": change(-0.0024, sst=-0.0127, para=0.0067, sts=-0.0022)}
    teacher = {"ffn_in": change(0.0054, sst=0.0054), "ffn_out": change(0.0009, sst=0.0009),
               "nothing": change(0.0054, sst=0.0054)}
    assert _choose(minilm) == "ffn_in" and _choose(teacher) == "nothing"
    near = {"ffn_in": change(0.0, sst=-0.0010), "nothing": change(-0.003, sst=-0.0035)}
    far = {"ffn_in": change(0.0, sst=-0.0010), "nothing": change(-0.003, sst=-0.0036)}
    assert _choose(near) == "nothing" and _choose(far) == "ffn_in"


@pytest.mark.parametrize("family", list(INT8_FP32_CANDIDATES))
def test_the_chosen_family_is_on_disk_whichever_was_measured_last(tiny_export, tiny_checkpoint, tmp_path,
                                                                  monkeypatch, family):
    folder = tmp_path / "export"
    shutil.copytree(tiny_export, folder)
    manifest = read_manifest(folder)
    monkeypatch.setattr(onnx_export, "_choose", lambda changes: family)
    model, _, _ = load_checkpoint(tiny_checkpoint)
    tasks = checkpoint_data(tiny_checkpoint, model.tasks, splits=("dev",))
    fields = _quantize_int8(folder, manifest, tasks, lambda *a: None)
    assert fields["int8_kept_fp32"] == family
    assert_files_keep(folder, manifest, family)


def test_without_dev_data_the_first_family_is_kept_and_nothing_is_claimed(tiny_export, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(tiny_export, folder)
    manifest = read_manifest(folder)
    fields = _quantize_int8(folder, manifest, None, lambda *a: None)
    first = next(iter(INT8_FP32_CANDIDATES))
    assert fields == {"int8_kept_fp32": first}
    assert_files_keep(folder, manifest, first)
