"""The seeds' extensions: SimCSE, MNRL, cosine embedding loss, head pretraining,
error analysis and the gradient-conflict report."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from safetensors.torch import load_file

from conftest import builtin
from mtcli.model import MinBert
from mtcli.model.multitask import HeadConfig, MultitaskModel
from mtcli.core.tokenizer import Tokenizer
from mtcli.train import TrainConfig
from mtcli.train import objectives
from mtcli.train.loop import Trainer


@pytest.fixture()
def tiny(tiny_model_dir):
    torch.manual_seed(0)
    model = MultitaskModel(MinBert.from_pretrained(tiny_model_dir), HeadConfig(), builtin())
    return model, Tokenizer.from_dir(tiny_model_dir)


def test_simcse_is_infonce_over_two_dropout_views(tiny):
    model, tokenizer = tiny
    sentences = ["a cat sat", "the dog ran", "rain falls", "a cat sat"]  # the duplicate is dropped
    model.eval()  # no dropout: both views equal, so the loss is the InfoNCE of identical embeddings
    loss = objectives.simcse_loss(model, tokenizer, sentences, "cpu")
    z = objectives._embed(model, tokenizer, sentences[:3], "cpu")
    logits = F.cosine_similarity(z.unsqueeze(1), z.unsqueeze(0), dim=-1) / 0.05
    assert loss.item() == pytest.approx(F.cross_entropy(logits, torch.arange(3)).item(), rel=1e-5)
    model.train()
    noisy = objectives.simcse_loss(model, tokenizer, sentences, "cpu")
    assert noisy.requires_grad and torch.isfinite(noisy)
    assert objectives.simcse_loss(model, tokenizer, ["only one"], "cpu") is None


def test_mnrl_uses_positive_pairs_with_in_batch_negatives(tiny):
    model, tokenizer = tiny
    model.eval()
    pairs = [("how to cook rice", "rice cooking steps"), ("best laptop", "good computer"), ("x", "y"), ("a", "b")]
    labels = [1, 1, 0, 1]
    loss = objectives.mnrl_loss(model, tokenizer, pairs, labels, "cpu")
    keep = [p for p, l in zip(pairs, labels) if l == 1]
    u = objectives._embed(model, tokenizer, [a for a, _ in keep], "cpu")
    v = objectives._embed(model, tokenizer, [b for _, b in keep], "cpu")
    expected = F.cross_entropy(20 * F.cosine_similarity(u.unsqueeze(1), v.unsqueeze(0), dim=-1), torch.arange(3))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert objectives.mnrl_loss(model, tokenizer, pairs, [0, 0, 0, 1], "cpu") is None


def test_cosine_embedding_targets(tiny):
    model, tokenizer = tiny
    model.eval()
    pairs = [("a b", "a b"), ("c d", "e f")]
    same = objectives.cosine_embedding_loss(model, tokenizer, pairs[:1], model.head("sts").similar([4.0]), "cpu")
    assert same.item() == pytest.approx(0.0, abs=1e-5)  # identical sentences, similar target: 1 - cos = 0
    u = objectives._embed(model, tokenizer, ["c d"], "cpu")
    v = objectives._embed(model, tokenizer, ["e f"], "cpu")
    cos = F.cosine_similarity(u, v).item()
    apart = objectives.cosine_embedding_loss(model, tokenizer, pairs[1:], model.head("para").similar([0]), "cpu",
                                             margin=0.1)
    assert apart.item() == pytest.approx(max(0.0, cos - 0.1), abs=1e-5)


def _config(tmp_path, tiny_model_dir, **overrides):
    values = dict(model_dir=str(tiny_model_dir), out=str(tmp_path), limit=48, batch_size=8, lr=1e-3, seed=1,
                  sampler="triple-batch", combine="pcgrad")
    values.update(overrides)
    return TrainConfig(**values)


def test_training_with_every_extra_objective(tmp_path, tiny_model_dir):
    trainer = Trainer(_config(tmp_path, tiny_model_dir, simcse=0.1, mnrl=0.5, cosine_embedding=1.0, max_steps=4,
                              name="extras"), Console(quiet=True))
    run = trainer.run()
    steps = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"type": "step"' in l]
    keys = set().union(*(s["loss"] for s in steps))
    assert {"sst:simcse", "para:simcse", "sts:simcse", "para:cosine", "sts:cosine"} <= keys
    assert "para:mnrl" in keys
    assert all(np.isfinite(v) for s in steps for v in s["loss"].values())


def test_head_pretraining_then_finetuning_and_resume_across_the_switch(tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir, epochs=3, pretrain_epochs=1, save_every=0, name="phases", lr=5e-4)
    trainer = Trainer(config, Console(quiet=True))
    encoder_before = {k: v.clone() for k, v in trainer.model.encoder.state_dict().items()}
    assert trainer.phase.name == "pretrain" and trainer.phase.grads is None
    assert trainer.phase.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / (int(0.1 * trainer.steps_per_epoch) + 1))
    original = trainer.step

    def stop_in_epoch_2(slots, step):
        if step == trainer.steps_per_epoch + 1:
            raise KeyboardInterrupt
        return original(slots, step)

    trainer.step = stop_in_epoch_2
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    after_epoch_1 = load_file(tmp_path / "phases" / "last" / "model.safetensors")
    from mtcli.model.loading import minbert_to_hf

    hf_before = minbert_to_hf(encoder_before, trainer.model.encoder.config)
    for name, tensor in hf_before.items():  # the encoder did not move while the heads pretrained
        assert torch.equal(after_epoch_1[name], tensor), name
    resumed = Trainer.resume(tmp_path / "phases", Console(quiet=True))
    assert resumed.phase.name == "finetune" and resumed.phase.grads is not None
    resumed.run()
    final = load_file(tmp_path / "phases" / "last" / "model.safetensors")
    assert any(not torch.equal(final[n], t) for n, t in hf_before.items())  # fine-tuning moved it

    straight = Trainer(_config(tmp_path, tiny_model_dir, epochs=3, pretrain_epochs=1, name="straight", lr=5e-4),
                       Console(quiet=True))
    straight.run()
    reference = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    for name in reference:  # resuming across the phase switch is exact too
        assert torch.equal(reference[name], final[name]), name


