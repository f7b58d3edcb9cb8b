"""mtcli.model.heads: one head per (arity, kind), each checked against literal torch
formulas for its forward pass, loss, prediction, label dtype and output scale."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from conftest import builtin
from mtcli.core.tasks import Task
from mtcli.model import MinBert
from mtcli.model.heads import Classifier, Regressor, make_head
from mtcli.model.multitask import HeadConfig, MultitaskModel

WIDTH = 32


def _task(kind, pair=False, **fields):
    base = dict(name="t", kind=kind, text=("a", "b") if pair else ("a",), label="y")
    if kind == "regression":
        base["range"] = (1.0, 7.0)
        base["metric"] = "pearson"
    else:
        base["labels"] = ("no", "yes") if kind == "binary" else ("x", "y", "z")
    if pair:
        base["encoding"] = "cross"
    return Task(**{**base, **fields})


@pytest.fixture()
def model(tiny_model_dir):
    torch.manual_seed(0)
    tasks = {"multi": _task("multiclass", name="multi"), "bin2": _task("binary", pair=True, name="bin2", encoding="siamese"),
             "reg": _task("regression", name="reg"), "cos2": _task("regression", pair=True, name="cos2", encoding="cosine"),
             "reg2": _task("regression", pair=True, name="reg2")}
    return MultitaskModel(MinBert.from_pretrained(tiny_model_dir), HeadConfig(dropout=0.0), tasks).eval()


def _inputs(encoding, rows=3, length=5):
    ids = torch.randint(1000, 2000, (rows, length))
    single = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    if encoding == "separate":
        return {f"{k}_{side}": v for side in ("a", "b") for k, v in single.items()}
    return single


def test_one_head_per_arity_and_kind():
    for kind in ("multiclass", "binary"):
        for pair in (False, True):
            assert isinstance(make_head(_task(kind, pair), WIDTH, 0.1), Classifier)
    assert isinstance(make_head(_task("regression"), WIDTH, 0.1), Regressor)
    assert make_head(_task("binary", True, encoding="siamese"), WIDTH, 0.1).linear.in_features == 4 * WIDTH
    assert make_head(_task("multiclass"), WIDTH, 0.1).linear.out_features == 3
    assert not list(make_head(_task("regression", True, encoding="cosine"), WIDTH, 0.1).parameters())
    assert make_head(_task("binary", True, encoding="cross"), WIDTH, 0.1).encoding == "joint"


def test_multiclass_head_is_linear_cross_entropy_softmax(model):
    head, inputs = model.head("multi"), _inputs("single")
    pooled = model.embed(**inputs)
    out = model("multi", inputs)
    assert torch.allclose(out, head.linear(pooled), atol=1e-6) and out.shape == (3, 3)
    labels = model.label_tensor("multi", [0, 2, 1], "cpu")
    assert labels.dtype == torch.long
    assert torch.allclose(model.loss("multi", out, labels), F.cross_entropy(out, labels))
    assert torch.allclose(model.predict("multi", out), torch.softmax(out, dim=-1))


def test_binary_siamese_head_uses_u_v_difference_and_product(model):
    head, inputs = model.head("bin2"), _inputs("separate")
    u, v = model.embed_pair(inputs)
    out = model("bin2", inputs)
    expected = head.linear(torch.cat([u, v, (u - v).abs(), u * v], dim=-1)).squeeze(-1)
    assert torch.allclose(out, expected, atol=1e-6) and out.shape == (3,)
    labels = model.label_tensor("bin2", [1, 0, 1], "cpu")
    assert labels.dtype == torch.float32
    assert torch.allclose(model.loss("bin2", out, labels), F.binary_cross_entropy_with_logits(out, labels))
    assert torch.allclose(model.predict("bin2", out), torch.sigmoid(out))
    assert head.similar([1, 0]) == [True, False] and head.has_positive_pairs


def test_regression_heads_scale_to_the_declared_range(model):
    inputs = _inputs("single")
    out = model("reg", inputs)
    expected = 1.0 + 6.0 * torch.sigmoid(model.head("reg").linear(model.embed(**inputs)).squeeze(-1))
    assert torch.allclose(out, expected, atol=1e-6) and ((1 <= out) & (out <= 7)).all()
    pair = _inputs("separate")
    u, v = model.embed_pair(pair)
    assert torch.allclose(model("cos2", pair), 1.0 + 6.0 * F.cosine_similarity(u, v, dim=-1), atol=1e-6)
    assert torch.equal(model.predict("cos2", torch.tensor([-3.0, 4.0, 9.0])), torch.tensor([1.0, 4.0, 7.0]))
    labels = model.label_tensor("reg", [1.5, 2.0, 7.0], "cpu")
    assert torch.allclose(model.loss("reg", out, labels), F.mse_loss(out, labels))
    assert model.head("cos2").similar([4.5, 4.6, 7.0]) == [False, True, True]  # from 60% of the range: 4.6
    assert model.head("reg").similar([7.0]) is None and not model.head("cos2").has_positive_pairs


def test_cs224n_heads_keep_their_formulas(tiny_model_dir):
    """The built-in tasks get the heads they always had: 5 logits, siamese 1 logit, 5 cos(u, v)."""
    model = MultitaskModel(MinBert.from_pretrained(tiny_model_dir), HeadConfig(), builtin())
    assert model.head("sst").linear.out_features == 5 and model.encoding("sst") == "single"
    assert model.head("para").linear.in_features == 4 * WIDTH and model.encoding("para") == "separate"
    assert model.head("sts").low == 0.0 and model.head("sts").high == 5.0 and model.head("sts").cosine
    assert replace(builtin("sts"), encoding="cross").encoding == "cross"
