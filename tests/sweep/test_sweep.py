"""`mtcli sweep`: space files checked before any trial, trials as run folders, pruning on dev
evaluations, a killed sweep resumed without losing or double-counting a trial, K workers."""

import json
import re

import pytest

pytest.importorskip("optuna")

from conftest import MAIL_TASK, run_cli, run_cli_here  # noqa: E402
from mtcli.core.errors import UserError  # noqa: E402
from mtcli.sweep import study as sweeps  # noqa: E402
from mtcli.sweep.space import Range, read_space  # noqa: E402


def _space(folder, model_dir, *, trials=3, search="random", pruner="median", extra=""):
    path = folder / "space.toml"
    path.write_text(f'objective = "overall"\nsearch = "{search}"\ntrials = {trials}\nseeds = [0]\n'
                    f'pruner = "{pruner}"\neval-every = 2\n{extra}\n'
                    f'[budget]\nmodel-dir = "{model_dir}"\nlimit = 32\nbatch-size = 8\nmax-steps = 4\nepochs = 1\n\n'
                    f'[space]\ncombine = ["sum", "upgrad", "famo"]\nlr = {{ low = 1e-4, high = 1e-2, log = true }}\n')
    return path


@pytest.mark.parametrize("text, message", [
    ('trials = 2\n[space]\ncombine = ["sum", "nope"]\n', r"space.toml:3: combine: choice 'nope': --combine 'nope'"),
    ('[space]\nbatch_size = [8]\n', r"space.toml:2: batch_size: not a recipe key"),
    ('[space]\nseed = [1, 2]\n', r"seed: set by the sweep"),
    ('search = "grid"\n[space]\nlr = { low = 1e-5, high = 1e-4 }\n', r"lr: grid search takes choices only"),
    ('[space]\npooling = { low = 1, high = 2 }\n', r"pooling: a range needs a number option"),
    ('[space]\nlr = { low = 0, high = 1, log = true }\n', r"lr: log = true needs low > 0"),
    ('objective = "nope"\n[space]\nlr = [1e-4]\n', r"objective: 'nope' is neither 'overall' nor a task"),
    ('seeds = [1, 1]\n[space]\nlr = [1e-4]\n', r"seeds: must be a list of different whole numbers"),
    ('trail = 3\n[space]\nlr = [1e-4]\n', r"space.toml:1: trail: not a space file key"),
    ('start = 3\n[space]\nlr = [1e-4]\n', r"space.toml:1: start: must be a list of tables of [space] keys"),
    ('trials = 2\nstart = [{ nope = 1 }]\n[space]\nlr = [1e-4]\n',
     r"space.toml:2: start: point 1: nope is not a key of [space] (the keys: lr)"),
    ('start = [{ lr = 1e-4 }, { lr = 1.0 }]\n[space]\nlr = { low = 1e-5, high = 1e-3 }\n',
     r"start: point 2: lr = 1.0 is outside the range 1e-05 to 0.001"),
    ('start = [{}]\n[space]\nlr = { low = 1e-5, high = 1e-3 }\n',
     r"start: point 1: lr = None (the base recipe's value: give it in the point) is not a number"),
    ('start = [{ batch-size = 24 }]\n[space]\nbatch-size = { low = 16, high = 64, step = 16 }\n',
     r"start: point 1: batch-size = 24 is not on the range's steps (16 + a multiple of 16)"),
    ('start = [{ combine = "upgrad" }]\n[space]\ncombine = ["sum", "famo"]\n',
     r"start: point 1: combine = 'upgrad' is not one of the choices ('sum', 'famo')"),
    ('start = [{}]\n[space]\ncombine = ["sum", "famo"]\n',
     r"start: point 1: combine = 'pcgrad' (the base recipe's value: give it in the point) is not one of the choices"),
    ('start = [{ lr = 1e-4 }, { lr = 1e-4 }]\n[space]\nlr = [1e-4, 1e-3]\n', r"start: point 2 is point 1 again"),
    ('search = "grid"\nstart = [{ lr = 1e-4 }]\n[space]\nlr = [1e-4]\n', r"start: a grid search tries every point"),
    # #47: what every trial would fail on, found before the first one
    ('[space]\nlr = { low = -1.0, high = 1e-3 }\n', r"lr: low -1 is not a value of lr (--lr -1: must be a positive"),
    ('[space]\ndropout = { low = 0.1, high = 3.0 }\n', r"dropout: high 3 is not a value of dropout (--dropout 3"),
    ('[space]\nbatch-size = { low = -4, high = 0 }\n', r"batch-size: low -4 is not a value of batch-size"),
    ('[space]\nbatch-size = { low = 8, high = 64, step = 8, log = true }\n', r"batch-size: a log range has no step"),
    ('[space]\ncombine = ["sum", "upgrad", "sum"]\n', r"combine: choice 'sum' is listed twice"),
    ('search = "grid"\n[space]\nepochs = [1, 2]\npretrain-epochs = [0, 1]\n',
     r"space: the point pretrain-epochs = 1, epochs = 1 is no valid recipe (--pretrain-epochs 1 must be"),
    ('search = "tpe"\n[space]\nepochs = { low = 1, high = 3 }\npretrain-epochs = [0, 2]\n',
     r"space: the point pretrain-epochs = 2, epochs = 1 is no valid recipe"),
])
def test_space_errors_name_the_file_line_and_key(tmp_path, text, message):
    (tmp_path / "space.toml").write_text(text)
    with pytest.raises(UserError, match=re.escape(message)):
        read_space(tmp_path / "space.toml")


def test_a_space_file_reads(tmp_path, tiny_model_dir):
    space = read_space(_space(tmp_path, tiny_model_dir))
    assert space.params == {"combine": ["sum", "upgrad", "famo"], "lr": Range(1e-4, 1e-2, log=True)}
    config = space.config({"combine": "famo", "lr": 1e-3}, name="t", out=str(tmp_path), seed=4)
    assert (config.combine, config.lr, config.limit, config.eval_every, config.seed) == ("famo", 1e-3, 32, 2, 4)


def test_a_sweep_runs_trials_as_run_folders_and_compare_reads_them(tmp_path, tiny_model_dir):
    """Two worker processes on one journal (--parallel 2): each trial runs once, in its own folder."""
    done = run_cli("sweep", _space(tmp_path, tiny_model_dir), "--out", tmp_path / "sweeps", "--name", "s",
                   "--parallel", "2")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    folder = tmp_path / "sweeps" / "s"
    record = json.loads((folder / "sweep.json").read_text())
    assert 3 <= sum(t["state"] in ("COMPLETE", "PRUNED") for t in record["trials"]) <= 4   # a worker may finish one more
    assert len({t["number"] for t in record["trials"]}) == len(record["trials"])
    assert record["best"]["value"] == max(t["value"] for t in record["trials"] if t["state"] == "COMPLETE")
    for trial in record["trials"]:
        run = folder / "trials" / f"{trial['number']:04d}-s0"
        config = json.loads((run / "config.json").read_text())
        assert config["combine"] == trial["params"]["combine"] and config["lr"] == trial["params"]["lr"]
        evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert any(r["type"] == "eval" and r["step"] == 2 for r in evals)   # what the pruner read
    again = run_cli("sweep", _space(tmp_path, tiny_model_dir), "--out", tmp_path / "sweeps", "--name", "s")
    assert again.returncode == 2 and b"--resume" in again.stderr
    compared = run_cli("compare", folder / "trials", "--out", tmp_path / "cmp", "--resamples", "100")
    assert compared.returncode == 0, compared.stderr.decode()[-2000:]
    written = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    finished = sum(t["state"] == "COMPLETE" for t in record["trials"])
    if finished >= 2:   # Optuna's fANOVA over the finished trials, and it says over how many
        assert set(written["importance"]) == {"combine", "lr"}
        assert (tmp_path / "cmp" / "compare-importance.png").is_file()
        assert written["importance_from"] == {"finished": finished, "trials": len(record["trials"])}
        printed = " ".join(compared.stdout.decode().split())   # the console wraps at its width
        assert f"over the {finished} finished trials of {len(record['trials'])}" in printed


def test_a_killed_sweep_resumes_without_losing_or_recounting_a_trial(tmp_path, tiny_model_dir, monkeypatch):
    from rich.console import Console

    folder = tmp_path / "sweeps" / "k"
    space = sweeps.prepare(_space(tmp_path, tiny_model_dir, trials=3, pruner="none"), folder, resume=False)
    original, calls = sweeps.run_trial, []

    def killed_in_the_second(trial, space, folder, console):
        calls.append(trial.number)
        if len(calls) == 2:
            sweeps.suggest(trial, space)
            raise KeyboardInterrupt   # Ctrl-C during trial 1's training: Optuna marks it failed
        return original(trial, space, folder, console)

    monkeypatch.setattr(sweeps, "run_trial", killed_in_the_second)
    with pytest.raises(KeyboardInterrupt):
        sweeps.optimize(folder, space, Console(quiet=True))
    monkeypatch.undo()
    study = sweeps.open_study(folder, space)
    stopped = study.get_trials()[1]
    left = study.ask()   # a trial left running by a kill -9, in its training
    sweeps.suggest(left, space)
    done = run_cli("sweep", "ignored.toml", "--out", tmp_path / "sweeps", "--name", "k", "--resume")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    trials = sweeps.open_study(folder, space).get_trials()
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(finished) == 3 and trials[0].state.name == "COMPLETE"            # trial 0 kept, not rerun
    assert [t.params for t in finished[1:]] == [stopped.params, left.params]      # both restarted, in turn
    assert {t.state.name for t in trials[1:3]} == {"FAIL"} and len(trials) == 5
    shown = " ".join((done.stdout + done.stderr).decode().split())   # the progress line, however rich wrapped it
    assert "2 interrupted and continued, 0 failed" in shown


def test_a_restarted_trial_keeps_its_finished_seed_and_continues_the_interrupted_one(tmp_path, tiny_model_dir):
    """A kill in a trial's second seed: on --resume the trial restarts with its values and its run
    folders become the new trial's; the finished seed is not trained again, the interrupted one
    goes on from the checkpoint its Ctrl-C saved, and the trial's value is the two runs' mean."""
    import signal

    from rich.console import Console

    from mtcli.core.errors import Interrupted
    from mtcli.train.loop import Trainer

    folder = tmp_path / "sweeps" / "c"
    space_file = _space(tmp_path, tiny_model_dir, trials=1, pruner="none").read_text().replace("seeds = [0]",
                                                                                                "seeds = [0, 1]")
    (tmp_path / "space.toml").write_text(space_file)
    space = sweeps.prepare(tmp_path / "space.toml", folder, resume=False)
    trial = sweeps.open_study(folder, space).ask()   # left running by the kill
    values = sweeps.suggest(trial, space)
    configs = [space.config(values, name=sweeps.run_name(0, seed), out=str(folder / "trials"), seed=seed)
               for seed in (0, 1)]
    Trainer(configs[0], Console(quiet=True)).run()
    finished = (folder / "trials" / "0000-s0" / "eval.json").read_bytes()
    with pytest.raises(Interrupted):   # Ctrl-C at seed 1's first evaluation (step 2 of 4)
        Trainer(configs[1], Console(quiet=True), on_eval=lambda step, r: signal.raise_signal(signal.SIGINT)).run()
    done = run_cli("sweep", "ignored.toml", "--out", tmp_path / "sweeps", "--name", "c", "--resume")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    record = json.loads((folder / "sweep.json").read_text())
    assert [t["state"] for t in record["trials"]] == ["FAIL", "COMPLETE"]
    assert record["trials"][1]["runs"] == [str(folder / "trials" / f"0001-s{seed}") for seed in (0, 1)]
    assert not (folder / "trials" / "stopped").exists() and not list((folder / "trials").glob("0000-*"))
    assert (folder / "trials" / "0001-s0" / "eval.json").read_bytes() == finished        # not trained again
    steps = [json.loads(line) for line in (folder / "trials" / "0001-s1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["type"] == "step"] == [1, 2, 3, 4]              # 3-4 after the kill, once
    overall = [json.loads((folder / "trials" / f"0001-s{seed}" / "eval.json").read_text())["overall"] for seed in (0, 1)]
    assert record["trials"][1]["value"] == pytest.approx(sum(overall) / 2)


def test_a_signal_in_a_trials_last_evaluation_stops_the_sweep_there(tmp_path, tiny_model_dir, monkeypatch):
    """A SIGTERM that comes after a trial's last step (in its final dev evaluation, the longest
    part of a small trial) stops the sweep there, not after the next trial: the training loop
    acts on a signal at its next step, and there is none. On --resume the finished run counts
    as it is, not trained again."""
    import signal

    from rich.console import Console

    from mtcli.core.errors import Interrupted
    from mtcli.train.dev import DevEvaluation

    folder = tmp_path / "sweeps" / "t"
    space = sweeps.prepare(_space(tmp_path, tiny_model_dir, trials=2, pruner="none"), folder, resume=False)
    epoch_end, signalled = DevEvaluation.epoch_end, []

    def signal_in_the_last_evaluation(self, log, position):   # a trial has one epoch: its evaluation is its last
        if not signalled:
            signalled.append(self.run_dir.name)
            signal.raise_signal(signal.SIGTERM)
        return epoch_end(self, log, position)

    monkeypatch.setattr(DevEvaluation, "epoch_end", signal_in_the_last_evaluation)
    with pytest.raises(Interrupted, match="the run had finished") as stopped:
        sweeps.optimize(folder, space, Console(quiet=True))
    assert stopped.value.signum == signal.SIGTERM and signalled == ["0000-s0"]
    assert len(sweeps.open_study(folder, space).get_trials()) == 1       # the next trial did not start
    finished = (folder / "trials" / "0000-s0" / "eval.json").read_bytes()
    monkeypatch.undo()
    done = run_cli("sweep", "ignored.toml", "--out", tmp_path / "sweeps", "--name", "t", "--resume")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    record = json.loads((folder / "sweep.json").read_text())
    assert [t["state"] for t in record["trials"]] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert (folder / "trials" / "0001-s0" / "eval.json").read_bytes() == finished      # counted, not retrained
    assert record["trials"][1]["value"] == json.loads(finished)["overall"]


def test_the_same_sweep_resumes_on_ray_tune(tmp_path, tiny_model_dir):
    """A sweep whose trial a kill left running, resumed on a local Ray instance with two trials at
    once: the journal's trial restarts with its parameters (its old run folder moved aside), the
    other is asked of the same Optuna study through Tune, ASHA reads the dev evaluations, and the
    run folders and sweep.json are the local engine's."""
    pytest.importorskip("ray.tune")
    folder = tmp_path / "sweeps" / "r"
    space = sweeps.prepare(_space(tmp_path, tiny_model_dir, trials=2, pruner="asha"), folder, resume=False)
    left = sweeps.open_study(folder, space).ask()
    sweeps.suggest(left, space)
    (folder / "trials" / "0000-s0").mkdir(parents=True)   # the killed trial's half-written run
    done = run_cli("sweep", "ignored.toml", "--out", tmp_path / "sweeps", "--name", "r", "--resume",
                   "--engine", "ray", "--parallel", "2", timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    record = json.loads((folder / "sweep.json").read_text())
    assert record["engine"] == "ray" and [t["state"] for t in record["trials"]][0] == "FAIL"
    assert (folder / "trials" / "stopped" / "0000-s0").is_dir()
    ran = record["trials"][1:]
    assert len(ran) == 2 and all(t["state"] in ("COMPLETE", "PRUNED") for t in ran)
    assert ran[0]["params"] == {k: json.loads(v) if isinstance(v, str) else v for k, v in left.params.items()}
    for trial in ran:
        assert trial["runs"] == [str(folder / "trials" / f"{trial['number']:04d}-s0")]
        assert json.loads((folder / "trials" / f"{trial['number']:04d}-s0" / "config.json").read_text())[
            "combine"] == trial["params"]["combine"]
    assert record["best"]["value"] == max(t["value"] for t in ran if t["state"] == "COMPLETE")


def test_a_trial_the_scheduler_stopped_is_pruned_and_only_a_finished_one_completes(tmp_path, tiny_model_dir):
    """Tune marks a trial its scheduler stopped `done` too: only mtcli's own last report (with the
    seeds' mean) completes a trial in the journal; a stopped trial is pruned, a failed one failed."""
    pytest.importorskip("ray.tune")

    from mtcli.sweep import ray_engine

    folder = tmp_path / "sweeps" / "p"
    space = sweeps.prepare(_space(tmp_path, tiny_model_dir, trials=3), folder, resume=False)
    search = ray_engine.searcher(folder, space, sweeps.sampler_for(space))
    for trial_id in ("stopped", "finished", "failed"):
        assert search.suggest(trial_id)["number"] is not None
    seen = ray_engine.RESOURCE
    search.on_trial_complete("stopped", {ray_engine.METRIC: 0.61, seen: 48, "done": True})
    search.on_trial_complete("finished", {ray_engine.METRIC: 0.63, seen: 120, "done": True, ray_engine.FINISHED: True})
    search.on_trial_complete("failed", {ray_engine.METRIC: 0.60, seen: 48}, error=True)
    trials = sweeps.open_study(folder, space).get_trials()
    assert [(t.state.name, t.value) for t in trials] == [("PRUNED", None), ("COMPLETE", 0.63), ("FAIL", None)]


def test_parallel_workers_and_this_process_share_the_cores(tmp_path, monkeypatch):
    """--parallel K: the K-1 launched workers and this process get cores/K threads each (not
    this process keeping all of them beside the others)."""
    import os
    import subprocess

    import torch

    launched = []
    monkeypatch.setattr(subprocess, "Popen", lambda argv, env, **_: launched.append(env))
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        sweeps.launch_workers(tmp_path, 4)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert [env["OMP_NUM_THREADS"] for env in launched] == ["2", "2", "2"]


def test_a_pruned_run_says_so_in_its_log_and_compare_tells_it_from_a_killed_one(tmp_path, tiny_model_dir):
    """What on_eval raises (run_trial's TrialPruned) stops the run and is logged as a stopped
    record with its reason; compare leaves the run out as pruned, naming the reason."""
    import optuna
    from rich.console import Console

    from mtcli.run.metrics_log import read_metrics
    from mtcli.train.loop import Trainer

    space = read_space(_space(tmp_path, tiny_model_dir, pruner="median"))
    trials = tmp_path / "trials"
    configs = [space.config({"combine": combine, "lr": 1e-3}, name=f"000{i}-s0", out=str(trials), seed=0)
               for i, combine in enumerate(("sum", "famo"))]
    Trainer(configs[0], Console(quiet=True)).run()

    def prune(step, results):
        raise optuna.TrialPruned(f"pruned at step {step} (overall {results['overall']:.4f})")

    with pytest.raises(optuna.TrialPruned):
        Trainer(configs[1], Console(quiet=True), on_eval=prune).run()
    last = read_metrics(trials / "0001-s0" / "metrics.jsonl")[-1]
    assert last["type"] == "stopped" and last["step"] == 2 and last["reason"].startswith("pruned at step 2 (overall ")
    best_so_far = (trials / "0000-s0" / "eval.json").read_bytes()
    (trials / "0001-s0" / "eval.json").write_bytes(best_so_far)   # as if it had had a best epoch
    done = run_cli("compare", trials, "--out", tmp_path / "cmp", "--resamples", "100")
    shown = " ".join(done.stdout.decode().split())
    assert done.returncode == 0 and "left out 1 run(s) stopped on a dev evaluation (a sweep's pruner)" in shown
    assert "0001-s0 (pruned at step 2 (overall" in shown and "did not train to their end" not in shown
    reported = run_cli("report", trials / "0001-s0")
    assert reported.returncode == 0 and b"stopped at step 2: pruned at step 2 (overall " in reported.stdout
    assert json.loads((trials / "0001-s0" / "report.json").read_text())["stopped"]["step"] == 2


def test_the_pruner_measures_training_in_examples_not_steps(tmp_path, tiny_model_dir):
    """The first seed's evaluations reach the pruner at step x batch size (a batch-64 trial at
    step 100 has seen what a batch-16 one has at step 400), and so does the Ray schedulers'
    resource, bounded by the space's largest and smallest batch. A one-seed trial's last
    evaluation does not (pruning there saves nothing: the trial completes); with more seeds the
    first seed's last one does (pruning there saves the other seeds)."""
    from rich.console import Console

    from mtcli.run.metrics_log import read_metrics
    from mtcli.sweep import ray_engine

    space = read_space(_space(tmp_path, tiny_model_dir, pruner="asha"))   # batch-size 8, eval every 2 steps
    reports = []
    mean, seen = sweeps.train_seeds(space, {"combine": "sum", "lr": 1e-3}, tmp_path, 0, Console(quiet=True),
                                    lambda seen, value: reports.append((seen, value)))
    log = read_metrics(tmp_path / "trials" / "0000-s0" / "metrics.jsonl")
    evaluations = [(r["step"] * 8, r["overall"]) for r in log if r["type"] in ("eval", "epoch")]
    assert [s for s, _ in evaluations] == [16, 32] and reports == evaluations[:1] and seen == 32
    space.seeds = [0, 1]
    reports.clear()
    sweeps.train_seeds(space, {"combine": "sum", "lr": 1e-3}, tmp_path / "two", 0, Console(quiet=True),
                       lambda seen, value: reports.append((seen, value)))
    log = read_metrics(tmp_path / "two" / "trials" / "0000-s0" / "metrics.jsonl")
    assert reports == [(r["step"] * 8, r["overall"]) for r in log if r["type"] in ("eval", "epoch")]
    assert [s for s, _ in reports] == [16, 32]
    assert ray_engine.batch_sizes(space, 8) == [8]
    searched = read_space(_space(tmp_path, tiny_model_dir))
    searched.params["batch_size"] = [16, 64]
    assert ray_engine.batch_sizes(searched, 8) == [16, 64]
    searched.params["batch_size"] = Range(8, 48)
    assert ray_engine.batch_sizes(searched, 8) == [8, 48]


def test_a_worker_does_not_start_a_trial_when_the_rest_are_running_elsewhere(tmp_path, tiny_model_dir):
    """A grid of 3 points, one of them running in another worker: this worker trains the other
    two and stops, instead of drawing a grid point a third time (each point runs once)."""
    from rich.console import Console

    space_file = _space(tmp_path, tiny_model_dir, search="grid", pruner="none")
    space_file.write_text(space_file.read_text().replace("lr = { low = 1e-4, high = 1e-2, log = true }", "lr = [1e-3]"))
    folder = tmp_path / "sweeps" / "g"
    space = sweeps.prepare(space_file, folder, resume=False)
    elsewhere = sweeps.open_study(folder, space).ask()   # another worker's trial, still training
    sweeps.suggest(elsewhere, space)
    sweeps.optimize(folder, space, Console(quiet=True))
    trials = sweeps.open_study(folder, space).get_trials()
    assert [t.state.name for t in trials] == ["RUNNING", "COMPLETE", "COMPLETE"]
    assert sorted(json.loads(t.params["combine"]) for t in trials) == ["famo", "sum", "upgrad"]   # choices as JSON


def test_a_continued_trial_takes_the_budgets_new_memory_and_save_settings(tmp_path, tiny_model_dir):
    """A sweep killed for memory, its budget then given `activation-checkpointing = true`: the
    interrupted trial's run folder is still a run of the same recipe (it continues, with the
    setting); a changed recipe value is another run (set aside)."""
    from rich.console import Console

    space = read_space(_space(tmp_path, tiny_model_dir))
    folder = tmp_path / "sweep"
    values = {"combine": "sum", "lr": 1e-3}
    for number, lr in ((0, 1e-3), (1, 2e-3)):
        old = space.config({**values, "lr": lr}, name=sweeps.run_name(number, 0), out=str(folder / "trials"), seed=0)
        (folder / "trials" / old.name).mkdir(parents=True)
        (folder / "trials" / old.name / "config.json").write_text(json.dumps(old.to_dict()))
    quiet = Console(quiet=True)
    for number, continues in ((2, 0), (3, 1)):
        config = space.config(values, name=sweeps.run_name(number, 0), out=str(folder / "trials"), seed=0)
        config.activation_checkpointing = True
        sweeps.carried_run(folder, continues, 0, config, quiet)
    assert (folder / "trials" / "0002-s0").is_dir()                      # trial 0 continues as trial 2
    recipe = (folder / "trials" / "0002-s0" / "recipe.toml").read_text()
    assert f"--config {folder / 'trials' / '0002-s0' / 'recipe.toml'}`" in recipe   # where it is now
    assert "activation-checkpointing = true" in recipe
    assert (folder / "trials" / "stopped" / "0001-s0").is_dir()          # another lr: not this recipe
    assert not (folder / "trials" / "0003-s0").exists()


def test_the_sweep_folders_copy_reads_in_the_same_order(tmp_path, tiny_model_dir):
    """Ranges before choices in the file; the folder's copy (tomli_w writes range tables last)
    lists and suggests the parameters in the same order: the recipe's field order."""
    path = _space(tmp_path, tiny_model_dir).read_text().replace(
        '[space]\ncombine = ["sum", "upgrad", "famo"]\nlr = { low = 1e-4, high = 1e-2, log = true }\n',
        '[space]\nlr = { low = 1e-4, high = 1e-2, log = true }\nwarmup = { low = 0.0, high = 0.2 }\n'
        'combine = ["sum", "upgrad", "famo"]\npooling = ["mean", "cls"]\n')
    (tmp_path / "mixed.toml").write_text(path)
    space = sweeps.prepare(tmp_path / "mixed.toml", tmp_path / "sweep", resume=False)
    copy = read_space(tmp_path / "sweep" / "space.toml")
    assert list(space.params) == list(copy.params) == ["combine", "pooling", "lr", "warmup"]


def test_a_process_that_joins_the_study_does_not_repeat_the_draws_before_it(tmp_path, tiny_model_dir):
    """A seeded sampler starts its draws over in every process: a resumed sweep (and a second
    --parallel worker) drew the first process's trials again, the same values trained twice. The
    sampler of a process joining a study with trials, or of worker 2, is seeded apart; a fresh
    study's first process keeps the space's seed (a new sweep is reproducible)."""
    space_path = _space(tmp_path, tiny_model_dir, search="tpe")
    space = sweeps.prepare(space_path, tmp_path / "sweep", resume=False)
    sweeps.prepare(space_path, tmp_path / "twin", resume=False)

    def first_values(folder, worker=0):
        study = sweeps.open_study(tmp_path / folder, space, worker)
        trial = study.ask()
        return study, trial, sweeps.suggest(trial, space)

    study, trial, values = first_values("sweep")
    assert first_values("twin")[2] == values       # a new sweep: the space's seed, the same first draw
    study.tell(trial, 0.5)
    joined = [first_values("sweep")[2], first_values("sweep", worker=1)[2]]
    assert values not in joined and joined[0] != joined[1]


def test_resume_does_not_restart_a_trial_whose_values_finished(tmp_path, tiny_model_dir):
    """A trial left running whose values a finished trial already trained (the repeat above):
    on --resume it is counted as restarted and its run folder set aside, not trained again."""
    space = sweeps.prepare(_space(tmp_path, tiny_model_dir), tmp_path / "sweep", resume=False)
    study = sweeps.open_study(tmp_path / "sweep", space)
    done = study.ask()
    values = sweeps.suggest(done, space)
    study.tell(done, 0.5)
    study.enqueue_trial({k.replace("_", "-"): v for k, v in done.params.items()})
    repeat = study.ask()
    assert sweeps.suggest(repeat, space) == values       # left RUNNING by a kill
    other = study.ask()
    sweeps.suggest(other, space)                          # another one left RUNNING
    for number in (repeat.number, other.number):          # each killed in its first epoch
        (tmp_path / "sweep" / "trials" / sweeps.run_name(number, 0)).mkdir(parents=True)
    sweeps.prepare(tmp_path / "ignored.toml", tmp_path / "sweep", resume=True)
    assert (tmp_path / "sweep" / "trials" / "stopped" / sweeps.run_name(repeat.number, 0)).is_dir()
    assert (tmp_path / "sweep" / "trials" / sweeps.run_name(other.number, 0)).is_dir()   # continued when it runs
    study = sweeps.open_study(tmp_path / "sweep", space)
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"]
    assert [t.user_attrs["continues"] for t in waiting] == [other.number]
    assert set(study.user_attrs["restarted"]) == {repeat.number, other.number}
    assert sweeps.repeats(study) == {repeat.number} and sweeps.interrupted(study) == {other.number}


def test_start_points_are_the_first_trials_and_are_queued_once(tmp_path, tiny_model_dir):
    """`start`: known recipes the search tries before its own draws, each a full point of the
    space (what a point leaves out is the base recipe's value); queued once in the study's
    life, so a resume does not train them again, and a point added to the sweep folder's copy
    of the space file runs next on --resume."""
    from rich.console import Console

    start = 'start = [{ combine = "famo", lr = 1e-3 }, { combine = "sum", lr = 2e-3 }]'
    space_path = _space(tmp_path, tiny_model_dir, search="tpe", pruner="none", extra=start)
    folder = tmp_path / "sweeps" / "st"
    space = sweeps.prepare(space_path, folder, resume=False)
    assert space.start == [{"combine": "famo", "lr": 1e-3}, {"combine": "sum", "lr": 2e-3}]
    sweeps.optimize(folder, space, Console(quiet=True))
    record = json.loads((folder / "sweep.json").read_text())
    assert [t["params"] for t in record["trials"][:2]] == [{"combine": "famo", "lr": 1e-3}, {"combine": "sum", "lr": 2e-3}]
    assert [t["start"] for t in record["trials"]] == [True, True, False]
    assert [t["state"] for t in record["trials"]] == ["COMPLETE"] * 3
    for trial in record["trials"][:2]:
        config = json.loads((folder / "trials" / sweeps.run_name(trial["number"], 0) / "config.json").read_text())
        assert (config["combine"], config["lr"], config["batch_size"]) == (trial["params"]["combine"],
                                                                          trial["params"]["lr"], 8)
    sweeps.prepare(tmp_path / "ignored.toml", folder, resume=True)
    study = sweeps.open_study(folder, space)
    assert not [t for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"]   # not queued again
    copy = folder / "space.toml"
    copy.write_text(copy.read_text().replace('lr = 0.002 },\n', 'lr = 0.002 },\n    { combine = "upgrad", lr = 5e-4 },\n'))
    sweeps.prepare(tmp_path / "ignored.toml", folder, resume=True)
    sweeps.prepare(tmp_path / "ignored.toml", folder, resume=True)
    waiting = [t for t in sweeps.open_study(folder, space).get_trials(deepcopy=False) if t.state.name == "WAITING"]
    assert [(t.system_attrs["fixed_params"], t.user_attrs) for t in waiting] == \
        [({"combine": '"upgrad"', "lr": 5e-4}, {"start": True})]


def test_ray_tune_asks_the_start_points_first(tmp_path, tiny_model_dir):
    """The Ray engine asks the same study through Tune's OptunaSearch: the start points are the
    first trials it hands out, with their values as the local engine would train them."""
    pytest.importorskip("ray.tune")

    from mtcli.sweep import ray_engine

    start = 'start = [{ combine = "famo", lr = 1e-3 }, { combine = "sum", lr = 2e-3 }]'
    space_path = _space(tmp_path, tiny_model_dir, search="tpe", pruner="none", extra=start)
    folder = tmp_path / "sweeps" / "rs"
    space = sweeps.prepare(space_path, folder, resume=False)
    search = ray_engine.searcher(folder, space, sweeps.sampler_for(space))
    handed = [search.suggest(trial_id) for trial_id in ("a", "b", "c")]
    assert [ray_engine.values_of(p, space) for p in handed[:2]] == [{"combine": "famo", "lr": 1e-3},
                                                                    {"combine": "sum", "lr": 2e-3}]
    assert [p["number"] for p in handed] == [0, 1, 2]
    trials = sweeps.open_study(folder, space).get_trials(deepcopy=False)
    assert [t.user_attrs.get("start", False) for t in trials] == [True, True, False]


def test_opening_a_sweeps_study_again_leaves_its_journal_as_it_was(tmp_path, tiny_model_dir):
    """Every --resume, --parallel worker and reader opens the study: only the first writes."""
    folder = tmp_path / "sweeps" / "j"
    space = sweeps.prepare(_space(tmp_path, tiny_model_dir), folder, resume=False)
    sweeps.open_study(folder, space)
    journal = (folder / "study.journal").read_bytes()
    for worker in range(3):
        assert sweeps.open_study(folder, space, worker).direction.name == "MAXIMIZE"
    assert (folder / "study.journal").read_bytes() == journal


# ---------------------------------------------------------------- #47: sweeps under attack

def _cli_one_line(result, *fragments):
    err = result.stderr.decode()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in err, err
    assert lines[-1].startswith("mtcli: error: "), err
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines


@pytest.mark.parametrize("name", ["../x", "/tmp/elsewhere", "a/b", ".."])
def test_a_sweep_name_stays_inside_out(tmp_path, tiny_model_dir, name):
    from conftest import run_cli_here

    result = run_cli_here("sweep", _space(tmp_path, tiny_model_dir), "--out", tmp_path / "sweeps", "--name", name)
    _cli_one_line(result, "--name", "one folder name inside --out")
    assert not (tmp_path / "x").exists() and not (tmp_path / "sweeps").exists()


def test_resume_refuses_an_edited_space_naming_what_changed(tmp_path, tiny_model_dir):
    folder = tmp_path / "sweeps" / "e"
    sweeps.prepare(_space(tmp_path, tiny_model_dir), folder, resume=False)
    copy = folder / "space.toml"
    original = copy.read_text()
    copy.write_text(original.replace("max-steps = 4", "max-steps = 40"))
    with pytest.raises(UserError, match=r"changed since the sweep started \(budget max-steps: 4 -> 40\)"):
        sweeps.prepare(tmp_path / "ignored.toml", folder, resume=True)
    copy.write_text(original.replace('"sum",\n', '"sum",\n    "pcgrad",\n'))
    with pytest.raises(UserError, match=r"space combine: \['sum', 'upgrad', 'famo'\] -> \['sum', 'pcgrad'"):
        sweeps.prepare(tmp_path / "ignored.toml", folder, resume=True)
    copy.write_text(original.replace("[budget]\n", "[budget]\nsave-every = 2\nactivation-checkpointing = true\n"))
    sweeps.prepare(tmp_path / "ignored.toml", folder, resume=True)   # how a trial computes and saves: allowed


def test_a_damaged_journal_is_repaired_at_a_torn_tail_and_refused_otherwise(tmp_path, tiny_model_dir):
    folder = tmp_path / "sweeps" / "d"
    sweeps.prepare(_space(tmp_path, tiny_model_dir), folder, resume=False)
    journal = folder / "study.journal"
    whole = journal.read_bytes()
    notes = []
    journal.write_bytes(whole + b'{"op_code": 4, "worker_id": "x", "study_id": 0, "datetime_st')   # a torn write
    sweeps.prepare(tmp_path / "ignored.toml", folder, resume=True, say=notes.append)
    assert journal.read_bytes().startswith(whole) and journal.read_bytes().endswith(b"\n")
    assert notes and "cut a torn last line" in notes[0]
    good = journal.read_bytes()
    for damage, message in ((b"garbage\n", "not a JSON record"), (b'{"op_code": 99}\n', "op_code 99 is no operation"),
                            (b"[" * 100_000 + b"\n", "not a JSON record")):
        lines = good.split(b"\n")
        journal.write_bytes(b"\n".join(lines[:1] + [damage.rstrip(b"\n")] + lines[1:]))
        result = run_cli_here("sweep", "ignored.toml", "--out", tmp_path / "sweeps", "--name", "d", "--resume")
        _cli_one_line(result, "study.journal:2: " + message)


def test_trials_that_keep_failing_stop_the_sweep_in_one_line_each(tmp_path, tiny_model_dir):
    (tmp_path / "tasks.toml").write_text(MAIL_TASK.format(name="mail", train="train.tsv", dev="dev.tsv"))
    (tmp_path / "dev.tsv").write_text("id\tmessage\tverdict\n" + "".join(f"d{i}\tword {i}\tham\n" for i in range(8)))
    (tmp_path / "train.tsv").write_text("id\tmessage\tverdict\na\tword\tmaybe\n")   # no label of the task
    path = tmp_path / "space.toml"
    path.write_text(f'search = "random"\ntrials = 50\nseeds = [0]\npruner = "none"\n[budget]\n'
                    f'model-dir = "{tiny_model_dir}"\ntasks = "tasks.toml"\nmax-steps = 2\n'
                    f'[space]\nlr = {{ low = 1e-4, high = 1e-2, log = true }}\n')
    result = run_cli("sweep", path, "--out", tmp_path / "sweeps", "--name", "f")
    lines = _cli_one_line(result, "stopped after 3 trials in a row failed, the last with:", "train.tsv:2")
    failed = [line for line in lines if line.startswith("trial ") and " failed: " in line]
    assert len(failed) == 3, lines
    record = json.loads((tmp_path / "sweeps" / "f" / "sweep.json").read_text())
    assert [t["state"] for t in record["trials"]] == ["FAIL"] * 3


def test_a_configuration_drawn_twice_is_not_trained_twice_and_compare_works(tmp_path, tiny_model_dir):
    path = tmp_path / "space.toml"
    path.write_text(f'search = "random"\ntrials = 3\nseeds = [0]\npruner = "none"\n[budget]\n'
                    f'model-dir = "{tiny_model_dir}"\nlimit = 16\nbatch-size = 8\nmax-steps = 2\nepochs = 1\n'
                    f'[space]\ncombine = ["sum", "mgda"]\n')
    done = run_cli("sweep", path, "--out", tmp_path / "sweeps", "--name", "r")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    folder = tmp_path / "sweeps" / "r"
    trials = sweeps.open_study(folder, read_space(folder / "space.toml")).get_trials()
    repeats = [t for t in trials if "same_as" in t.user_attrs]
    assert repeats and all(t.value == trials[t.user_attrs["same_as"]].value for t in repeats)
    assert not any((folder / "trials" / sweeps.run_name(t.number, 0)).exists() for t in repeats)
    printed = " ".join(done.stderr.decode().split())
    command = printed.split("compare them: ")[1].split()
    compared = run_cli(*command[1:], "--out", tmp_path / "cmp", "--resamples", "100")
    assert compared.returncode == 0, compared.stderr.decode()[-2000:]
