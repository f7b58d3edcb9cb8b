"""minBERT on tiny random configs: HF layout round trips, prefixes, .bin files, errors."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from mtcli.core.errors import UserError
from mtcli.model import BertConfig, MinBert
from mtcli.model.loading import hf_to_minbert, minbert_to_hf
from mtcli.core.tokenizer import Tokenizer, _wordpiece_from_vocab


def _batch(tokenizer, texts, pairs=None):
    return {k: torch.from_numpy(v) for k, v in tokenizer.encode(texts, pairs).items()}


@pytest.mark.parametrize("model_type, key", [("bert", "encoder.layer.1.attention.self.key.weight"),
                                             ("mpnet", "encoder.layer.1.attention.attn.k.weight")])
def test_hf_round_trip_is_lossless(model_type, key):
    config = BertConfig.for_family(model_type, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=64)
    model = MinBert(config, with_pooler=True)
    state = model.state_dict()
    back = hf_to_minbert(minbert_to_hf(state, config), config)
    assert set(back) == set(state)
    for name in state:
        assert torch.equal(back[name], state[name]), name
    hf = minbert_to_hf(state, config)
    assert key in hf and hf[key].shape == (32, 32)


def test_save_and_load_give_the_same_outputs(tiny_model_dir, tmp_path):
    model = MinBert.from_pretrained(tiny_model_dir).eval()
    tokenizer = Tokenizer.from_dir(tiny_model_dir)
    batch = _batch(tokenizer, ["a short one", "and a somewhat longer sentence here"], ["x", "y z"])
    model.save_pretrained(tmp_path)
    again = MinBert.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(**batch), again(**batch))


def test_loads_bert_prefix_and_pytorch_bin(tiny_model_dir, tmp_path):
    reference = MinBert.from_pretrained(tiny_model_dir).eval()
    hf = load_file(tiny_model_dir / "model.safetensors")
    prefixed = {f"bert.{k}": v for k, v in hf.items()}
    prefixed["cls.predictions.bias"] = torch.zeros(3)            # an MLM head is ignored
    prefixed["bert.embeddings.position_ids"] = torch.arange(256)[None]
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    torch.save(prefixed, tmp_path / "pytorch_model.bin")
    loaded = MinBert.from_pretrained(tmp_path).eval()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_padding_does_not_change_outputs(tiny_model_dir):
    model = MinBert.from_pretrained(tiny_model_dir).eval()
    tokenizer = Tokenizer.from_dir(tiny_model_dir)
    texts = ["short", "a considerably longer sentence with many more tokens in it"]
    with torch.no_grad():
        padded = model(**_batch(tokenizer, texts))
        alone = model(**_batch(tokenizer, texts[:1]))
    assert torch.allclose(padded[0, : alone.shape[1]], alone[0], atol=1e-5)


def test_spelled_out_attention_equals_sdpa(packaged_model_dir):
    """The form traced for export (matmul, additive mask, softmax) computes what SDPA does."""
    model = MinBert.from_pretrained(packaged_model_dir).eval()
    batch = _batch(Tokenizer.from_dir(packaged_model_dir), ["short", "a considerably longer sentence, padded against"])
    with torch.no_grad():
        sdpa = model(**batch)
        model.spelled_out_attention = True
        spelled = model(**batch)
    real = batch["attention_mask"].bool()
    assert (sdpa[real] - spelled[real]).abs().max() < 1e-5
    with pytest.raises(RuntimeError, match="export"):
        model.train()(**batch)


def test_missing_and_corrupt_weights_are_user_errors(tiny_model_dir, tmp_path):
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(UserError, match="no model.safetensors or pytorch_model.bin"):
        MinBert.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="cannot read weights"):
        MinBert.from_pretrained(tmp_path)
    hf = load_file(tiny_model_dir / "model.safetensors")
    del hf["encoder.layer.1.output.dense.weight"]
    save_file(hf, tmp_path / "model.safetensors")
    with pytest.raises(UserError, match="lacks 1 encoder weights"):
        MinBert.from_pretrained(tmp_path)
    with pytest.raises(UserError, match="model folder not found"):
        MinBert.from_pretrained(tmp_path / "nope")


def test_vocab_txt_tokenizer_equals_tokenizer_json(packaged_model_dir):
    from_json = Tokenizer.from_dir(packaged_model_dir)
    from_vocab = Tokenizer(_wordpiece_from_vocab(packaged_model_dir))
    texts = ["The Rock is destined to be the 21st Century 's new `` Conan '' .", "Ünïcödé — emoji 🙂 CAPS!", "a"]
    pairs = ["What can you get as a customer?", "x", "Two black dogs are playing."]
    for a, b in ((texts, None), (texts, pairs)):
        left, right = from_json.encode(a, b), from_vocab.encode(a, b)
        for key in left:
            assert (left[key] == right[key]).all(), key


def test_tokenizer_truncates_long_pairs_to_max_length(packaged_model_dir):
    tokenizer = Tokenizer.from_dir(packaged_model_dir)
    batch = tokenizer.encode(["word " * 5000], ["other " * 10])
    assert batch["input_ids"].shape == (1, 128)
    assert batch["token_type_ids"][0].sum() > 0  # the second sentence kept its tokens (longest first)
    assert batch["input_ids"][0, -1] == 102


def test_recomputed_activations_give_the_same_gradients_with_the_same_dropout():
    """recompute_activations keeps each layer's input only and runs the layer again in backward,
    restoring the RNG: the same dropout masks, so the same output and gradients."""
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    model = MinBert(config).train()
    ids = torch.randint(5, config.vocab_size, (3, 7))
    mask = torch.ones_like(ids)
    results = []
    for recompute in (False, True):
        model.recompute_activations = recompute
        model.zero_grad()
        torch.manual_seed(0)
        out = model(ids, mask)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (plain, plain_grads), (again, again_grads) = results
    torch.testing.assert_close(again, plain)
    for a, b in zip(again_grads, plain_grads):
        torch.testing.assert_close(a, b)
