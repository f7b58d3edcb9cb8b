"""Exact resume, the non-finite guard, atomic writes, and fuzzed TSV input."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from conftest import REPO, crashed_at
from mtcli.model.checkpoint import TRAINER_STATE, read_meta, save_checkpoint
from mtcli.core.errors import UserError
from mtcli.core.fileio import atomic_path, staged_dir, write_json
from mtcli.inference.manifest import export_files
from mtcli.train import TrainConfig
from mtcli.train.loop import NonFiniteError, Trainer


def _config(tmp_path, tiny_model_dir, name, **overrides):
    values = dict(model_dir=str(tiny_model_dir), out=str(tmp_path), name=name, limit=64, batch_size=8, epochs=2,
                  lr=1e-3, save_every=3, sampler="annealed", combine="pcgrad", seed=3)
    values.update(overrides)
    return TrainConfig(**values)


def _weights(run_dir):
    return load_file(run_dir / "last" / "model.safetensors")


def _crashed_at_step_11(config, console):
    """A run of `config` stopped by a crash in step 11 (mid-epoch 2, two steps after the save at
    step 9 under _config's save_every=3)."""
    return crashed_at(config, console, 10)


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("combine", ["pcgrad", "gradvac", "nash-mtl", "upgrad", "uw", "famo", "dwa", "rlw",
                                     "gradnorm", "imtl", "rgw", "sdmgrad", "graddrop", "excess-mtl", "moco",
                                     "db-mtl", "modo"])
def test_resume_after_interruption_is_bit_identical(tmp_path, tiny_model_dir, combine):
    """Weights, and the weighting's own state (shuffles, GradVac's targets, Nash-MTL's warm
    start), continue exactly as if the run had never stopped."""
    quiet = Console(quiet=True)
    straight = Trainer(_config(tmp_path, tiny_model_dir, "straight", combine=combine), quiet)
    straight.run()
    total = straight.total_steps

    interrupted = _crashed_at_step_11(_config(tmp_path, tiny_model_dir, "interrupted", combine=combine), quiet)
    assert read_meta(interrupted.run_dir / "last")["step"] == 9 < total

    resumed = Trainer.resume(interrupted.run_dir, quiet)
    assert resumed.position.step == 9 and resumed.position.epoch == 2
    assert str(resumed.weighting.state_dict()) != str(type(resumed.weighting)(num_tasks=3).state_dict()) \
        or combine == "upgrad"  # the restored state is not a fresh one
    resumed.run()
    _assert_identical(_weights(straight.run_dir), _weights(interrupted.run_dir))
    assert str(resumed.weighting.state_dict()) == str(straight.weighting.state_dict())
    steps = [json.loads(l)["step"] for l in (interrupted.run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["type"] == "step"]
    assert steps == list(range(1, total + 1))  # the log continues with no gap and no duplicate


def test_activation_checkpointing_trains_the_same_run(tmp_path, tiny_model_dir):
    """Recomputing the encoder's activations in backward (the same dropout masks) changes memory,
    not the run: with SimCSE's two dropout views and MNRL on, the weights after every step match."""
    quiet = Console(quiet=True)
    extra = dict(simcse=0.1, mnrl=0.5, dropout=0.1, max_steps=6)
    plain = Trainer(_config(tmp_path, tiny_model_dir, "plain", **extra), quiet)
    plain.run()
    recomputed = Trainer(_config(tmp_path, tiny_model_dir, "recomputed", activation_checkpointing=True, **extra), quiet)
    assert recomputed.model.encoder.recompute_activations
    recomputed.run()
    a, b = _weights(plain.run_dir), _weights(recomputed.run_dir)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    assert any(not torch.equal(a[k], load_file(tiny_model_dir / "model.safetensors")[k])
               for k in load_file(tiny_model_dir / "model.safetensors") if k in a)  # it trained


def test_resume_may_turn_on_activation_checkpointing(tmp_path, tiny_model_dir):
    """A run that ran out of memory continues with --activation-checkpointing: config.json then
    says so, and the run ends where the uninterrupted one does; any other option may not change."""
    quiet = Console(quiet=True)
    straight = Trainer(_config(tmp_path, tiny_model_dir, "straight"), quiet)
    straight.run()
    interrupted = _crashed_at_step_11(_config(tmp_path, tiny_model_dir, "interrupted"), quiet)
    with pytest.raises(ValueError, match="only activation_checkpointing"):
        Trainer.resume(interrupted.run_dir, quiet, settings={"lr": 0.5})
    resumed = Trainer.resume(interrupted.run_dir, quiet, settings={"activation_checkpointing": True})
    assert resumed.model.encoder.recompute_activations and resumed.position.step == 9
    assert json.loads((interrupted.run_dir / "config.json").read_text())["activation_checkpointing"] is True
    assert "activation-checkpointing = true" in (interrupted.run_dir / "recipe.toml").read_text()
    resumed.run()
    a, b = _weights(straight.run_dir), _weights(interrupted.run_dir)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    args = ["-m", "mtcli", "train", "--model-dir", str(tiny_model_dir), "--out", str(tmp_path), "--limit", "64",
            "--batch-size", "8", "--epochs", "3", "--lr", "1e-3", "--save-every", "2", "--seed", "5",
            "--sampler", "proportional", "--combine", "pcgrad"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, *args, "--name", "straight"], capture_output=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    total = read_meta(tmp_path / "straight" / "last")["step"]

    victim = subprocess.Popen([sys.executable, *args, "--name", "killed"], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = tmp_path / "killed" / "last" / "mtcli.json"
    deadline = time.time() + 240
    while time.time() < deadline and victim.poll() is None:
        try:
            if 6 <= json.loads(meta.read_text())["step"] < total - 8:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    saved = read_meta(tmp_path / "killed" / "last")["step"]
    assert saved < total

    resumed = subprocess.run([sys.executable, "-m", "mtcli", "train", "--resume", str(tmp_path / "killed")],
                             capture_output=True, env=env, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert f"resumed at step {saved}" in resumed.stderr.decode().replace("\n", " ")
    _assert_identical(_weights(tmp_path / "straight"), _weights(tmp_path / "killed"))


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_model_dir):
    trainer = Trainer(_config(tmp_path, tiny_model_dir, "nan", save_every=2), Console(quiet=True))
    real_loss = trainer.model.loss

    def poisoned(task, output, labels):
        loss = real_loss(task, output, labels)
        return loss * float("nan") if trainer.position.step == 4 and task == "sts" else loss

    trainer.model.loss = poisoned
    with pytest.raises(NonFiniteError, match=r"step 5: sts loss is nan; training stopped\. .*last \(step 4\)"):
        trainer.run()
    last = trainer.run_dir / "last"
    assert read_meta(last)["step"] == 4
    assert all(torch.isfinite(t).all() for t in load_file(last / "model.safetensors").values())
    records = [json.loads(l) for l in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["type"] == "nonfinite" and records[-1]["step"] == 5


def test_skip_nonfinite_counts_and_continues(tmp_path, tiny_model_dir):
    trainer = Trainer(_config(tmp_path, tiny_model_dir, "skip", skip_nonfinite=True, max_steps=8), Console(quiet=True))
    real_loss = trainer.model.loss
    trainer.model.loss = lambda task, o, l: real_loss(task, o, l) * (float("inf") if trainer.position.step == 2 else 1.0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    assert trainer.position.skipped == 1 and trainer.position.step == 8
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_cli_nonfinite_exit_2(tmp_path, tiny_model_dir):
    from conftest import run_cli

    result = run_cli("train", "--model-dir", tiny_model_dir, "--out", tmp_path, "--limit", "32", "--batch-size", "8",
                     "--lr", "1e12", "--clip", "0", "--warmup", "0", "--max-steps", "30", "--name", "boom")
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and "training stopped" in lines[-1] and b"Traceback" not in result.stderr


def test_failure_mid_write_leaves_no_final_file(tmp_path):
    target = tmp_path / "eval.json"
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert not target.exists() and not list(tmp_path.iterdir())
    write_json(target, {"ok": 1})
    with pytest.raises(OSError):  # an existing file survives a failed rewrite untouched
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert json.loads(target.read_text()) == {"ok": 1} and len(list(tmp_path.iterdir())) == 1


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, tiny_checkpoint, monkeypatch):
    from mtcli.model.checkpoint import load_checkpoint

    model, tokenizer, _ = load_checkpoint(tiny_checkpoint)
    save_checkpoint(model, tokenizer, tmp_path / "best", info={"step": 1})
    import safetensors.torch

    def full_disk(*args, **kwargs):
        open(args[1], "wb").write(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OSError):
        save_checkpoint(model, tokenizer, tmp_path / "best", info={"step": 2})
    assert read_meta(tmp_path / "best")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    with pytest.raises(OSError):
        with staged_dir(tmp_path / "export", export_files, "an export") as staging:
            (staging / "sst.onnx").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_resume_needs_a_resumable_run(tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        Trainer.resume(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "last").mkdir()
    with pytest.raises(UserError, match=f"no {TRAINER_STATE}; this last/ is not a resumable checkpoint"):
        Trainer.resume(tmp_path)
