"""An MPNet export (tiny random config) through every torch-free surface: the manifest says
the encoder takes no token types, and score, Scorer, eval --onnx and serve follow it."""

import csv
import json

import numpy as np
import onnx
import pytest

from conftest import run_cli
from mtcli.inference.manifest import read_manifest
from mtcli.inference.scorer import Scorer


def test_the_manifest_and_graphs_take_no_token_types(tiny_mpnet_export):
    manifest = read_manifest(tiny_mpnet_export)
    assert manifest["encoder"]["model_type"] == "mpnet" and manifest["encoder"]["token_types"] is False
    assert manifest["tasks"]["sts"]["inputs"] == ["input_ids", "attention_mask"]
    assert manifest["tasks"]["para"]["inputs"] == ["input_ids_a", "attention_mask_a", "input_ids_b", "attention_mask_b"]
    for name in ("sst.onnx", "sts.onnx", "embed.onnx", "sst.int8.onnx"):
        graph = onnx.load(str(tiny_mpnet_export / name))
        assert "token_type_ids" not in {i.name for i in graph.graph.input}, name
    for entry in manifest["tasks"].values():   # what onnxruntime fused is recorded, whatever it was
        assert entry["fused_operators"].get("SkipLayerNormalization", 0) >= 2
        assert entry["parity_max_abs_diff"] <= 1e-4


def test_a_manifest_that_lies_about_token_types_is_refused(tiny_mpnet_export, tmp_path):
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(tiny_mpnet_export, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["encoder"]["token_types"] = True
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("score", "sst", "-", "--model", copy, input=b"id\tsentence\n1\tgood\n")
    assert result.returncode == 2
    assert "embedding.inputs" in result.stderr.decode() or "inputs" in result.stderr.decode()


def test_score_scorer_and_eval_agree_on_mpnet(tiny_mpnet_export, tiny_mpnet_checkpoint, tmp_path):
    import torch

    from mtcli.core.encoding import encode
    from mtcli.model.checkpoint import load_checkpoint

    rows = [("A dog runs.", "A dog is running."), ("Two men talk.", "A man speaks " * 20), ("x", "y")]
    with open(tmp_path / "in.tsv", "w", newline="") as fh:
        csv.writer(fh, delimiter="\t").writerows([("id", "sentence1", "sentence2"), *((f"r{i}", *r) for i, r in enumerate(rows))])
    scorer = Scorer(tiny_mpnet_export, providers=["cpu"])
    model, tokenizer, _ = load_checkpoint(tiny_mpnet_checkpoint)
    for task in ("sts", "para"):
        result = run_cli("score", task, tmp_path / "in.tsv", "--model", tiny_mpnet_export)
        assert result.returncode == 0, result.stderr.decode()
        cli = np.array([float(line.split("\t")[-1]) for line in result.stdout.decode().splitlines()[1:]])
        assert np.abs(scorer.score(task, rows) - cli).max() <= 5e-7
        with torch.no_grad():
            inputs = {k: torch.from_numpy(v) for k, v in encode(tokenizer, model.encoding(task), rows).items()}
            expected = model.predict(task, model(task, inputs)).numpy()
        assert np.abs(scorer.score(task, rows) - expected).max() <= 1e-4
    int8 = Scorer(tiny_mpnet_export, int8=True, providers=["cpu"])
    assert int8.score("sst", ["good", "bad"]).shape == (2, 5)
    assert scorer.embed(["A dog runs."]).shape == (1, 32)
    done = run_cli("eval", "--split", "dev", "--onnx", tiny_mpnet_export, "--out", tmp_path / "eval")
    assert done.returncode == 0, done.stderr.decode()
    assert 0 <= json.loads((tmp_path / "eval" / "eval.json").read_text())["overall"] <= 1


def test_serve_answers_on_mpnet(tiny_mpnet_export):
    pytest.importorskip("fastapi")
    import asyncio

    import httpx

    from mtcli.serve.app import create_app

    app = create_app(tiny_mpnet_export, providers=("cpu",))

    async def body():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return (await client.post("/v1/tasks/sts/score", json={"rows": [["A dog runs.", "A dog is running."]]})).json()

    answer = asyncio.run(body())
    expected = Scorer(tiny_mpnet_export, providers=["cpu"]).score("sts", [("A dog runs.", "A dog is running.")])
    assert np.allclose([r["score"] for r in answer["results"]], expected, atol=1e-6)


def test_mpnets_attention_is_one_fused_node_per_layer_with_parity(tiny_mpnet_export, tiny_mpnet_checkpoint, tmp_path):
    """#60: MPNet's attention exported as onnxruntime's MultiHeadAttention (relative bias as its
    attention_bias): within 1e-5 of the checkpoint and of the unfused graph."""
    import onnxruntime as ort
    import torch

    from mtcli.core.encoding import encode
    from mtcli.export.onnx import TaskGraph, _export_encoder_graph, _sample_inputs
    from mtcli.model.checkpoint import load_checkpoint

    manifest = read_manifest(tiny_mpnet_export)
    for name in ("sts", "sst"):
        assert manifest["tasks"][name]["fused_operators"].get("MultiHeadAttention") == 2   # the tiny MPNet's 2 layers
        assert manifest["tasks"][name]["parity_max_abs_diff"] <= 1e-5
    graph = onnx.load(str(tiny_mpnet_export / "sst.onnx"))
    assert [n.op_type for n in graph.graph.node].count("MultiHeadAttention") == 2
    assert [n.op_type for n in graph.graph.node].count("Softmax") == 1   # the head's alone

    model, tokenizer, _ = load_checkpoint(tiny_mpnet_checkpoint)
    with torch.no_grad():   # a relative bias that matters (a random tiny model's is too small to show its absence)
        model.encoder.relative_bias.table.weight.mul_(50)
    task_graph = TaskGraph(model, "sst")
    sample = _sample_inputs(tokenizer, "single", task_graph.names)
    for fused_node, name in ((True, "fused.onnx"), (False, "unfused.onnx")):
        model.encoder.multi_head_attention_node = fused_node   # off: the spelled-out nodes, left unfused
        fused = _export_encoder_graph(task_graph, sample, "probabilities", tmp_path / name, 18, model.encoder.config)
        assert ("MultiHeadAttention" in fused) == fused_node
    rows = [("A dog runs in the park.",), ("x",), ("Two men talk about " + "nothing " * 30,)]
    feed = {k: v for k, v in encode(tokenizer, "single", rows).items() if k in task_graph.names}
    outputs = [ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"]).run(None, feed)[0]
               for name in ("fused.onnx", "unfused.onnx")]
    with torch.no_grad():
        expected = model.predict("sst", model("sst", {k: torch.from_numpy(v) for k, v in feed.items()})).numpy()
        model.encoder.relative_bias.table.weight.zero_()
        without_bias = model.predict("sst", model("sst", {k: torch.from_numpy(v) for k, v in feed.items()})).numpy()
    assert np.abs(expected - without_bias).max() > 2e-4   # 20x the bound below: a graph without the bias fails it
    assert np.abs(outputs[0] - expected).max() <= 1e-5 and np.abs(outputs[1] - expected).max() <= 1e-5
