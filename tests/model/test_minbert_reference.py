"""minBERT with the packaged all-MiniLM-L6-v2 weights against reference activations
made with the HF BertModel (tests/fixtures/minilm_reference.*)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import FIXTURES
from mtcli.model import MinBert
from mtcli.core.tokenizer import Tokenizer

TOL = 1e-4


@pytest.fixture(scope="module")
def reference():
    return json.loads((FIXTURES / "minilm_reference.json").read_text()), load_file(FIXTURES / "minilm_reference.safetensors")


@pytest.fixture(scope="module")
def model(packaged_model_dir):
    return MinBert.from_pretrained(packaged_model_dir).eval()


@pytest.fixture(scope="module")
def tokenizer(packaged_model_dir):
    return Tokenizer.from_dir(packaged_model_dir)


def _tensors(batch):
    return {k: torch.from_numpy(v) for k, v in batch.items()}


def test_default_backbone_is_minilm(model):
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert 22_000_000 < model.num_parameters() < 23_000_000


def test_single_sentences_match_reference(model, tokenizer, reference):
    meta, tensors = reference
    for item in meta["singles"]:
        batch = tokenizer.encode([item["text"]])
        assert batch["input_ids"][0].tolist() == item["input_ids"], item["text"]
        with torch.no_grad():
            hidden = model(**_tensors(batch))[0]
        expected = tensors[item["key"]]
        assert hidden.shape == expected.shape
        assert (hidden - expected).abs().max().item() <= TOL, item["text"]


def test_pairs_match_reference(model, tokenizer, reference):
    meta, tensors = reference
    for item in meta["pairs"]:
        batch = tokenizer.encode([item["text_a"]], [item["text_b"]])
        assert batch["input_ids"][0].tolist() == item["input_ids"]
        assert batch["token_type_ids"][0].tolist() == item["token_type_ids"]
        with torch.no_grad():
            hidden = model(**_tensors(batch))[0]
        assert (hidden - tensors[item["key"]]).abs().max().item() <= TOL


def test_padded_batch_mean_pool_matches_reference(model, tokenizer, reference):
    meta, tensors = reference
    batch = _tensors(tokenizer.encode([item["text"] for item in meta["singles"]]))
    with torch.no_grad():
        hidden = model(**batch)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert (pooled - tensors["singles_meanpool_normalized"]).abs().max().item() <= TOL
    # and every padded row equals its unpadded encoding
    for row, item in enumerate(meta["singles"]):
        n = len(item["input_ids"])
        assert (hidden[row, :n] - tensors[item["key"]]).abs().max().item() <= TOL
