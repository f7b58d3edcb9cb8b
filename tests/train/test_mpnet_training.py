"""Training on an MPNet backbone (a tiny random config): every sampler and every method run,
resume is bit-identical, activation checkpointing trains the same run, and torchrun's two
processes equal one. The same paths as BERT's: nothing above the model knows the family."""

import os
import subprocess
import sys

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from conftest import REPO, crashed_at
from mtcli.model.checkpoint import read_meta
from mtcli.train import TrainConfig
from mtcli.train.loop import Trainer
from mtcli.train.samplers import SAMPLERS
from mtcli.weightings import WEIGHTINGS

QUIET = Console(quiet=True)


def _config(tmp_path, model_dir, name, **overrides):
    values = dict(model_dir=str(model_dir), out=str(tmp_path), name=name, limit=48, batch_size=8, epochs=2,
                  lr=1e-3, save_every=3, sampler="annealed", combine="pcgrad", seed=3)
    return TrainConfig(**{**values, **overrides})


def _weights(run_dir):
    return load_file(run_dir / "last" / "model.safetensors")


def test_an_mpnet_run_saves_an_mpnet_checkpoint(tmp_path, tiny_mpnet_dir):
    run = Trainer(_config(tmp_path, tiny_mpnet_dir, "kinds", max_steps=2), QUIET)
    run.run()
    weights = _weights(run.run_dir)
    assert "encoder.relative_attention_bias.weight" in weights and "encoder.layer.0.attention.attn.q.weight" in weights
    assert not any("token_type" in k for k in weights)
    initial = load_file(tiny_mpnet_dir / "model.safetensors")
    assert not torch.equal(weights["encoder.relative_attention_bias.weight"],
                           initial["encoder.relative_attention_bias.weight"])  # the shared bias trains


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_trains_mpnet(tmp_path, tiny_mpnet_dir, sampler):
    run = Trainer(_config(tmp_path, tiny_mpnet_dir, sampler, sampler=sampler, max_steps=2, epochs=1), QUIET)
    run.run()
    assert read_meta(run.run_dir / "last")["step"] == 2


@pytest.mark.parametrize("combine", list(WEIGHTINGS))
def test_every_method_trains_mpnet(tmp_path, tiny_mpnet_dir, combine):
    extra = {"task_weights": {"sst": 0.5, "para": 1.0, "sts": 2.0}} if combine == "weighted" else {}
    run = Trainer(_config(tmp_path, tiny_mpnet_dir, combine, combine=combine, sampler="triple-batch", max_steps=2,
                          limit=16, epochs=1, **extra), QUIET)
    run.run()
    weights = _weights(run.run_dir)
    assert all(torch.isfinite(t).all() for t in weights.values())


@pytest.mark.parametrize("combine", ["pcgrad", "moco", "famo"])   # one per family: gram, rows, losses
def test_mpnet_resume_is_bit_identical(tmp_path, tiny_mpnet_dir, combine):
    straight = Trainer(_config(tmp_path, tiny_mpnet_dir, "straight", combine=combine), QUIET)
    straight.run()
    interrupted = crashed_at(_config(tmp_path, tiny_mpnet_dir, "interrupted", combine=combine), QUIET, 7)
    assert read_meta(interrupted.run_dir / "last")["step"] == 6
    Trainer.resume(interrupted.run_dir, QUIET).run()
    a, b = _weights(straight.run_dir), _weights(interrupted.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mpnet_activation_checkpointing_trains_the_same_run(tmp_path, tiny_mpnet_dir):
    extra = dict(simcse=0.1, mnrl=0.5, dropout=0.1, max_steps=4)
    plain = Trainer(_config(tmp_path, tiny_mpnet_dir, "plain", **extra), QUIET)
    plain.run()
    recomputed = Trainer(_config(tmp_path, tiny_mpnet_dir, "recomputed", activation_checkpointing=True, **extra), QUIET)
    recomputed.run()
    a, b = _weights(plain.run_dir), _weights(recomputed.run_dir)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_mpnet_under_torchrun_equals_one_process(tmp_path, tiny_mpnet_dir):
    def train(name, processes):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] \
            if processes > 1 else [sys.executable]
        args = ["-m", "mtcli", "train", "--model-dir", str(tiny_mpnet_dir), "--out", str(tmp_path), "--name", name,
                "--limit", "32", "--batch-size", "8", "--dropout", "0", "--epochs", "1", "--max-steps", "3",
                "--lr", "1e-3", "--sampler", "proportional", "--combine", "upgrad", "--seed", "7"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        done = subprocess.run([*launcher, *args], capture_output=True, env=env, cwd=REPO, timeout=240)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        return _weights(tmp_path / name)

    a, b = train("ddp", 2), train("single", 1)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
