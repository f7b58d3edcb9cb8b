"""Training on a tiny random BERT (2 layers, 32 wide) with --limit: every sampler and
combination runs, losses fall on a repeated batch, runs write what they promise."""

import json

import numpy as np
import pytest
import torch

from conftest import run_cli, run_cli_here
from mtcli.model.checkpoint import load_checkpoint
from mtcli.eval.evaluate import score_predictions
from mtcli.core.data import read_split
from mtcli.core.metrics import overall, task_metrics
from conftest import builtin

TASKS = builtin()
from mtcli.train import TrainConfig
from mtcli.train.loop import Trainer
from mtcli.train.samplers import SAMPLERS
from mtcli.weightings import WEIGHTINGS, kernel

COMBINES = list(WEIGHTINGS)
from rich.console import Console


def _config(tmp_path, tiny_model_dir, **overrides) -> TrainConfig:
    values = dict(model_dir=str(tiny_model_dir), out=str(tmp_path), limit=64, batch_size=8, epochs=1,
                  lr=1e-3, eval_batch_size=32, seed=0)
    values.update(overrides)
    if values.get("combine") == "weighted":
        values.setdefault("task_weights", {"sst": 0.5, "para": 1, "sts": 1})
    return TrainConfig(**values)


def _quiet() -> Console:
    return Console(stderr=True, quiet=True)


# Every method with a sampler in turn, and every sampler with one method of each family: the
# samplers decide which tasks a step holds, the methods must weigh whatever it holds
SAMPLER_SPECS = [*SAMPLERS, "temperature:tau=5", "annealed:start=0.5,end=0"]
CASES = sorted({(SAMPLER_SPECS[i % len(SAMPLER_SPECS)], c) for i, c in enumerate(COMBINES)}
               | {(s, c) for s in SAMPLER_SPECS for c in ("pcgrad", "uw")})


@pytest.mark.parametrize("sampler, combine", CASES)
def test_every_sampler_and_weighting_trains(tmp_path, tiny_model_dir, sampler, combine):
    trainer = Trainer(_config(tmp_path, tiny_model_dir, sampler=sampler, combine=combine, max_steps=5,
                              name=f"{sampler}-{combine}".replace(":", "-").replace("=", "-")), _quiet())
    run = trainer.run()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    assert len(steps) == min(5, trainer.total_steps) and all(np.isfinite(list(r["loss"].values())).all() for r in steps)
    assert all(set(r["weights"]) == {t for t in r["loss"] if ":" not in t} for r in steps)  # one weight per task
    assert all(np.isfinite(list(r["weights"].values())).all() for r in steps)
    multi = [r for r in steps if len(r["weights"]) > 1]
    if WEIGHTINGS[combine].family == "losses":  # no task gradients: no cosines to log
        assert multi and not any("grad_cosine" in r for r in steps)
    else:
        assert multi and all(0 <= r["conflict_fraction"] <= 1 and r["grad_cosine"] for r in multi)
    epochs = [r for r in records if r["type"] == "epoch"]
    assert len(epochs) == 1 and set(epochs[0]["dev"]) == set(TASKS)


# Krum follows one task's gradient (the one closest to the others), and PBI pays for distance from
# the preference line, so neither lowers every loss at once by design. ExcessMTL's weights (on the
# simplex) move to the task of the largest excess risk: every loss falls, some slowly.
AT_MOST = {"excess-mtl": 1.0}


@pytest.mark.parametrize("combine", [c for c in COMBINES if c not in ("krum", "pbi")])
def test_loss_goes_down_on_a_repeated_batch(tmp_path, tiny_model_dir, combine):
    trainer = Trainer(_config(tmp_path, tiny_model_dir, sampler="triple-batch", combine=combine, warmup=0.0,
                              dropout=0.0, epochs=5), _quiet())
    slots = trainer.sampler.epoch_plan(1)[0]
    first = trainer.step(slots, 0).losses
    for step in range(1, 30):
        last = trainer.step(slots, step).losses
    for task in TASKS:
        assert last[task].item() < AT_MOST.get(combine, 0.8) * first[task].item(), \
            (task, first[task].item(), last[task].item())


@pytest.mark.filterwarnings(r"ignore:Seems like `optimizer.step\(\)` has been overridden")
@pytest.mark.parametrize("combine", ["sum", "weighted", "pcgrad", "upgrad", "nash-mtl"])
def test_the_optimizer_sees_the_weighted_combination(tmp_path, tiny_model_dir, combine):
    """The encoder's .grad is exactly sum_k w_k g_k of the task rows, with the weights the
    run's weighting gives their Gram matrix (a copy of it, state and shuffle included)."""
    import copy

    trainer = Trainer(_config(tmp_path, tiny_model_dir, sampler="triple-batch", combine=combine, clip=0.0), _quiet())
    expected_weighting = copy.deepcopy(trainer.weighting)
    captured = {}
    original = trainer.phase.optimizer.step

    def spy():
        captured["grad"] = torch.cat([p.grad.flatten() for p in trainer.model.shared_parameters()]).clone()
        captured["rows"] = trainer.phase.grads.buffer[:3].clone()
        return original()

    trainer.phase.optimizer.step = spy
    result = trainer.step(trainer.sampler.epoch_plan(1)[0], step=4)
    weights = expected_weighting(kernel.gram(captured["rows"]), [list(TASKS).index(t) for t in result.tasks])
    assert np.array_equal(weights, result.weights)
    if combine == "weighted":
        assert weights.tolist() == [{"sst": 0.5, "para": 1, "sts": 1}[t] for t in result.tasks]
    expected = torch.from_numpy(weights).float() @ captured["rows"]
    assert torch.allclose(captured["grad"], expected, atol=1e-7)
    assert captured["rows"].abs().sum(1).gt(0).all()  # one non-zero gradient row per task


def test_task_weights_weigh_gradients_not_losses(tmp_path, tiny_model_dir):
    """sum and weighted differ only in the encoder's combination: the heads see their own loss unscaled."""
    runs = {}
    for combine in ("sum", "weighted"):
        trainer = Trainer(_config(tmp_path, tiny_model_dir, sampler="triple-batch", combine=combine, clip=0.0,
                                  dropout=0.0, name=combine), _quiet())
        result = trainer.step(trainer.sampler.epoch_plan(1)[0], step=0)
        runs[combine] = (result, {n: p.detach().clone() for n, p in trainer.model.named_parameters()})
    (s, sum_params), (w, weighted_params) = runs["sum"], runs["weighted"]
    assert s.weights.tolist() == [1.0, 1.0, 1.0] and sorted(w.weights.tolist()) == [0.5, 1.0, 1.0]
    assert all(torch.equal(s.losses[t], w.losses[t]) for t in TASKS)
    heads = [n for n in sum_params if n.startswith("heads.")]
    assert heads and all(torch.equal(sum_params[n], weighted_params[n]) for n in heads)
    assert any(not torch.equal(sum_params[n], weighted_params[n]) for n in sum_params if n.startswith("encoder."))


def test_run_folder_checkpoints_and_eval_cli(tmp_path, tiny_model_dir):
    run = Trainer(_config(tmp_path, tiny_model_dir, name="demo", max_steps=6), _quiet()).run()
    for name in ("config.json", "metrics.jsonl", "curves.png", "confusion_sst.png", "eval.json",
                 "best/model.safetensors", "best/mtcli.json", "best/tokenizer.json", "last/config.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["sampler"] == "proportional"
    model, tokenizer, meta = load_checkpoint(run / "best")
    assert meta["heads"]["pooling"] == "mean" and meta["step"] == 6

    result = run_cli("eval", "--checkpoint", run / "best", "--limit", "64", "--out", tmp_path / "ev")
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    trained = json.loads((run / "eval.json").read_text())
    for task in TASKS:  # the CLI reproduces the training-time dev scores of the same checkpoint
        metric = TASKS[task].metric
        assert report["tasks"][task][metric] == pytest.approx(trained["tasks"][task][metric], abs=1e-6)

    result = run_cli("eval", "--split", "test", "--checkpoint", run / "best", "--limit", "10", "--out", tmp_path / "test")
    assert result.returncode == 0, result.stderr.decode()
    lines = (tmp_path / "test" / "sts-test-output.csv").read_text().splitlines()
    assert lines[0] == "id,Predicted_Similiary" and len(lines) == 11
    assert (tmp_path / "test" / "sst-test-output.csv").read_text().splitlines()[1].split(",")[1] in "01234"


def test_pretrain_phase_freezes_the_encoder(tmp_path, tiny_model_dir):
    trainer = Trainer(_config(tmp_path, tiny_model_dir, phase="pretrain", lr=None, sampler="triple-batch"), _quiet())
    before = [p.detach().clone() for p in trainer.model.encoder.parameters()]
    head_before = trainer.model.heads["sst"].linear.weight.detach().clone()
    trainer.step(trainer.sampler.epoch_plan(1)[0], 0)
    assert trainer.config.learning_rate == 1e-3 and trainer.phase.grads is None
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.encoder.parameters()))
    assert not torch.equal(head_before, trainer.model.heads["sst"].linear.weight)


@pytest.mark.parametrize("para_mode, sts_mode, pooling", [("siamese", "cosine", "cls"), ("cross", "cosine", "mean")])
def test_pair_modes_and_pooling(tmp_path, tiny_model_dir, para_mode, sts_mode, pooling):
    trainer = Trainer(_config(tmp_path, tiny_model_dir, encodings={"para": para_mode, "sts": sts_mode}, pooling=pooling,
                              sampler="triple-batch", max_steps=3, name="modes"), _quiet())
    assert (len(list(trainer.model.heads["sts"].parameters())) > 0) == (sts_mode == "cross")
    assert trainer.model.heads["para"].linear.in_features == (4 if para_mode == "siamese" else 1) * 32
    run = trainer.run()
    model, _, meta = load_checkpoint(run / "best")
    assert model.tasks["para"].encoding == para_mode and model.tasks["sts"].encoding == sts_mode
    assert meta["heads"]["pooling"] == pooling


def test_metrics_equal_a_hand_computation():
    sst_probs = np.eye(5)[[0, 1, 2, 3, 4, 4]]          # predicts 0,1,2,3,4,4
    sst_gold = [0, 1, 2, 0, 4, 3]                       # 4 of 6 right
    para_probs = np.array([0.9, 0.2, 0.6, 0.4])         # predicts 1,0,1,0
    para_gold = [1, 0, 0, 0]                            # 3 of 4 right
    sts_pred = np.array([1.0, 2.0, 3.0, 4.0])
    sts_gold = [1.0, 3.0, 2.0, 4.0]
    # Pearson by hand: deviations (-1.5,-.5,.5,1.5) and (-1.5,.5,-.5,1.5): sum of products 4, norms 5 -> 0.8
    sst = task_metrics(TASKS["sst"], sst_probs, sst_gold)
    para = task_metrics(TASKS["para"], para_probs, para_gold)
    sts = task_metrics(TASKS["sts"], sts_pred, sts_gold)
    assert sst["accuracy"] == pytest.approx(4 / 6)
    assert para["accuracy"] == pytest.approx(0.75)
    assert sts["pearson"] == pytest.approx(0.8) and sts["spearman"] == pytest.approx(0.8)
    assert overall(TASKS, {"sst": sst, "para": para, "sts": sts}) == pytest.approx((4 / 6 + 0.75 + 0.9) / 3)


def test_score_predictions_on_real_dev_labels():
    split = read_split(TASKS["sts"], "dev")
    gold = np.array(split.labels)
    results = score_predictions({"sts": split}, {"sts": gold})
    assert results["tasks"]["sts"]["pearson"] == pytest.approx(1.0) and results["overall"] == pytest.approx(1.0)


def test_bad_options_are_user_errors(tmp_path):
    for args, message in ((["--sampler", "random"], "--sampler 'random': unknown sampler; expected one of proportional, temperature"),
                          (["--combine", "weighted"], "--combine weighted needs --task-weights"),
                          (["--task-weights", "sst=half"], "expected task=number pairs"),
                          (["--upsample", "imdb=2"], "unknown task")):
        result = run_cli_here("train", *args, "--out", tmp_path)
        assert result.returncode == 2 and message in result.stderr.decode(), result.stderr.decode()
        assert b"Traceback" not in result.stderr


def test_heads_learn_at_their_own_rate(tmp_path, tiny_model_dir):
    """Fresh linear heads get --head-lr (default 1e-3), the pretrained encoder --lr."""
    def rates(trainer):
        heads = {id(p) for p in trainer.model.heads.parameters()}
        found = {}
        for group in trainer.phase.optimizer.param_groups:
            kind = "head" if id(group["params"][0]) in heads else "encoder"
            assert all((id(p) in heads) == (kind == "head") for p in group["params"])
            found.setdefault(kind, set()).add(group["initial_lr"])
        return found

    trainer = Trainer(_config(tmp_path, tiny_model_dir, lr=3e-5), _quiet())
    assert rates(trainer) == {"encoder": {3e-5}, "head": {1e-3}}
    trainer = Trainer(_config(tmp_path, tiny_model_dir, lr=3e-5, head_lr=2e-4), _quiet())
    assert rates(trainer) == {"encoder": {3e-5}, "head": {2e-4}}
    trainer = Trainer(_config(tmp_path, tiny_model_dir, lr=None, phase="pretrain"), _quiet())
    assert rates(trainer) == {"head": {1e-3}}  # encoder frozen: not in the optimizer


@pytest.mark.parametrize("combine", COMBINES)
def test_every_combination_sees_one_batch_per_task_slot(tmp_path, tiny_model_dir, combine):
    """Every weighting combines the same task batches: only the combination differs."""
    trainer = Trainer(_config(tmp_path, tiny_model_dir, combine=combine), _quiet())
    plan = trainer.sampler.epoch_plan(1)
    assert all(len(step) == 3 for step in plan[:-1])
    if not WEIGHTINGS[combine].reads_gram:
        classic = Trainer(_config(tmp_path, tiny_model_dir, combine=combine, slots=1), _quiet())
        assert all(len(step) == 1 for step in classic.sampler.epoch_plan(1))
        assert trainer.steps_per_epoch == -(-classic.steps_per_epoch // 3)  # the same batches, three per step


@pytest.mark.parametrize("combine", ["pcgrad", "mgda"])
def test_gram_weightings_refuse_one_slot(tmp_path, tiny_model_dir, combine):
    result = run_cli("train", "--slots", "1", "--combine", combine, "--out", tmp_path)
    assert result.returncode == 2 and "--slots 1" in result.stderr.decode()


def test_head_pretraining_with_a_parameter_free_cosine_head(tmp_path, tiny_model_dir):
    """With the encoder frozen, cosine STS has nothing to train: its loss is logged, not back-propagated."""
    trainer = Trainer(_config(tmp_path, tiny_model_dir, phase="pretrain", lr=None, encodings={"sts": "cosine"},
                              sampler="triple-batch"), _quiet())
    result = trainer.step(trainer.sampler.epoch_plan(1)[0], 0)
    losses = result.losses
    assert result.gram is None and result.gradient_record() == {}  # no shared gradient: nothing to weigh
    assert set(losses) == {"sst", "para", "sts"} and all(torch.isfinite(v) for v in losses.values())
