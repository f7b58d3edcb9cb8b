"""`mtcli export --format hf`: the model as an HF / sentence-transformers folder, loaded back
by mtcli, exported from to ONNX, and (when the peers are installed) by sentence-transformers."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli, run_cli_here
from mtcli.core.errors import UserError
from mtcli.export.hf import export_hf
from mtcli.inference.scorer import Scorer
from mtcli.model import MinBert
from mtcli.model.checkpoint import load_checkpoint
from mtcli.model.multitask import pool

SENTENCES = ["A dog runs.", "Two men are talking about a film they both saw last week.", "x"]


def _ours(checkpoint):
    model, tokenizer, _ = load_checkpoint(checkpoint)
    batch = {k: torch.from_numpy(v) for k, v in tokenizer.encode(SENTENCES).items()}
    with torch.no_grad():
        return model.encode("single", batch), batch, model


@pytest.mark.parametrize("which", ["tiny_checkpoint", "tiny_mpnet_checkpoint"])
def test_the_folder_holds_the_encoder_in_its_familys_layout(request, tmp_path, which):
    checkpoint = request.getfixturevalue(which)
    folder = export_hf(checkpoint, tmp_path / "model")
    expected, batch, model = _ours(checkpoint)
    family = model.encoder.config.model_type
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == family and ("type_vocab_size" in config) == (family == "bert")
    weights = load_file(folder / "model.safetensors")
    assert not any(k.startswith("heads.") for k in weights)
    assert all(k.startswith("heads.") for k in load_file(folder / "heads.safetensors"))
    assert not list(folder.rglob("*.pt")) and not list(folder.rglob("*.bin"))   # nothing pickled
    again = MinBert.from_pretrained(folder).eval()   # --model-dir folder
    with torch.no_grad():
        pooled = pool(again(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]),
                      batch["attention_mask"], model.head_config.pooling)
    assert torch.equal(pooled, expected)
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] == (model.head_config.pooling == "mean")
    assert pooling["word_embedding_dimension"] == config["hidden_size"]
    assert [m["type"] for m in json.loads((folder / "modules.json").read_text())] == [
        "sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling"]


def test_the_model_card_carries_the_runs_metrics_and_recipe(tiny_checkpoint, tmp_path):
    folder = export_hf(tiny_checkpoint, tmp_path / "model")
    card = (folder / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    values = {line.split(": ", 1)[0]: json.loads(line.split(": ", 1)[1]) for line in front.strip().splitlines()}
    assert values["library_name"] == "sentence-transformers" and values["datasets"] == ["sst", "para", "sts"]
    evaluated = json.loads((tiny_checkpoint.parent / "eval.json").read_text())["tasks"]
    results = {r["task"]["name"]: {m["type"]: m["value"] for m in r["metrics"]}
               for r in values["model-index"][0]["results"]}
    assert results["sts"]["pearson"] == evaluated["sts"]["pearson"]
    assert "## Recipe" in body and "```toml" in body and "## Data" in body
    assert "sha256" in body and "mtcli export --checkpoint runs/<name>/best --format hf" in body


def test_round_trip_to_onnx_scores_as_the_checkpoint(tiny_checkpoint, tiny_export, tmp_path):
    folder = export_hf(tiny_checkpoint, tmp_path / "model")
    done = run_cli("export", "--checkpoint", folder, "--out", tmp_path / "onnx")
    assert done.returncode == 0, done.stderr.decode()
    rows = [("A dog runs.", "A dog is running."), ("Two men talk.", "A cat sleeps.")]
    for task in ("sts", "para"):
        again = Scorer(tmp_path / "onnx", providers=["cpu"]).score(task, rows)
        assert np.abs(again - Scorer(tiny_export, providers=["cpu"]).score(task, rows)).max() <= 1e-6


def test_refusals(tiny_checkpoint, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty and is not an earlier `mtcli export --format hf`"):
        export_hf(tiny_checkpoint, mine)
    assert (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="is inside the run folder"):
        export_hf(tiny_checkpoint, tiny_checkpoint.parent / "hf")
    export_hf(tiny_checkpoint, tmp_path / "model")
    export_hf(tiny_checkpoint, tmp_path / "model")   # its own folder: replaced
    result = run_cli_here("export", "--checkpoint", tiny_checkpoint, "--format", "hf", "--quantize", "int8")
    assert result.returncode == 2 and b"--format hf writes the encoder and heads as they are" in result.stderr
    result = run_cli_here("export", "--checkpoint", tiny_checkpoint, "--format", "gguf")
    assert result.returncode == 2 and b"--format 'gguf': expected onnx" in result.stderr
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "model", damaged)
    (damaged / "heads.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="heads.safetensors: cannot read the heads"):
        load_checkpoint(damaged)


def test_sentence_transformers_loads_it_with_equal_embeddings(tiny_checkpoint, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    folder = export_hf(tiny_checkpoint, tmp_path / "model")
    expected, _, _ = _ours(tiny_checkpoint)
    got = torch.from_numpy(st.SentenceTransformer(str(folder), device="cpu").encode(SENTENCES))
    assert (got - expected).abs().max().item() <= 1e-5


def test_the_onnx_export_carries_the_same_card(tiny_export, tiny_checkpoint):
    card = (tiny_export / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: ") and "mtcli score TASK rows.tsv --model" in card
    assert "## Recipe" in card and "## Training" in card and "## Data" in card
    meta = json.loads((tiny_checkpoint / "mtcli.json").read_text())
    assert meta["trained"]["seconds"] >= 0 and meta["trained"]["device"] == "cpu"   # where and how long it trained
    assert f"for {meta['trained']['seconds']} s" in card
