"""`mtcli compare`: intervals and Holm's correction against literal computations (scipy), the
paired bootstrap against a literal numpy bootstrap, grouping by recipe, and run folders that
may come from anyone."""

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from conftest import builtin, run_cli, run_cli_here
from mtcli.core.errors import UserError
from mtcli.core.metrics import overall, task_metrics
from mtcli.eval.compare import compare, holm, mean_interval
from mtcli.run.predictions import FILE, read_dev_predictions, write_dev_predictions

SIZES = {"sst": 120, "para": 150, "sts": 90}


def _labels():
    rng = np.random.default_rng(0)
    return {"sst": rng.integers(0, 5, SIZES["sst"]), "para": rng.integers(0, 2, SIZES["para"]),
            "sts": rng.uniform(0, 5, SIZES["sts"])}


def _predictions(skill: float, seed: int) -> dict[str, np.ndarray]:
    """Predictions that are right with probability ~skill (classes) or correlate ~skill (scores)."""
    rng, labels = np.random.default_rng(100 + seed), _labels()
    sst = rng.dirichlet(np.ones(5), SIZES["sst"])
    right = rng.uniform(size=SIZES["sst"]) < skill
    sst[right, labels["sst"][right]] += 2.0
    para = np.where(rng.uniform(size=SIZES["para"]) < skill, labels["para"], 1 - labels["para"]) * 0.8 + 0.1
    sts = skill * labels["sts"] + (1 - skill) * rng.uniform(0, 5, SIZES["sts"])
    return {"sst": sst / sst.sum(1, keepdims=True), "para": para, "sts": sts}


def _run(folder, name, *, combine, seed, skill, epochs_done=2):
    """A run folder as `mtcli train` leaves it: config.json, eval.json, metrics.jsonl, the predictions
    (`epochs_done` < 2: as a kill leaves it, eval.json from its best epoch so far)."""
    run = folder / name
    run.mkdir(parents=True)
    tasks, labels = builtin(), _labels()
    predictions = _predictions(skill, seed)
    scores = {t: task_metrics(tasks[t], predictions[t], labels[t]) for t in tasks}
    headline = {t: scores[t][tasks[t].metric] for t in tasks}
    total = overall(tasks, scores)
    (run / "config.json").write_text(json.dumps({"combine": combine, "sampler": "proportional", "seed": seed,
                                                 "name": name, "out": str(folder), "epochs": 2}))
    (run / "eval.json").write_text(json.dumps({"headline": headline, "overall": total}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"type": "epoch", "epoch": e, "step": 10 * e, "dev": {},
                                                           "overall": total - 0.05 * (2 - e)}) + "\n"
                                                   for e in range(1, epochs_done + 1)))
    splits = {t: SimpleNamespace(task=tasks[t], labels=list(labels[t])) for t in tasks}
    write_dev_predictions(run, splits, predictions, epoch=2)
    return run, total


def test_intervals_and_holm_equal_literal_computations():
    values = [0.71, 0.73, 0.70, 0.74]
    mean, half = mean_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values)) and (mean - half, mean + half) == pytest.approx((low, high))
    assert mean_interval([0.7]) == (0.7, None)
    # Holm by hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_a_searched_value_is_labeled_with_four_digits_and_grouped_exactly(tmp_path):
    """A sweep's values (lr=6.650867830801159e-05) make labels too long to read or plot: shown to
    4 significant digits, or as many as tell two recipes' values apart; grouped by the exact values."""
    for name, lr in (("a", 6.650867830801159e-05), ("b", 1.2345678e-4), ("c", 1.2345679e-4)):
        run, _ = _run(tmp_path / "runs", name, combine="sum", seed=0, skill=0.6)
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "lr": lr}))
    recipes, _, _ = compare([tmp_path / "runs"], resamples=100, seed=1)
    assert sorted(r.label for r in recipes) == ["lr=0.00012345678", "lr=0.00012345679", "lr=6.6508678e-05"]


def test_backbones_are_labeled_by_name_the_default_too(tmp_path):
    """A run on the packaged backbone records model_dir None: labeled by that backbone's name."""
    from mtcli.core.backbones import DEFAULT_BACKBONE

    for name, model_dir in (("minilm", None), ("mpnet", "all-mpnet-base-v2"), ("folder", "/models/my-bert"),
                            ("hostile", 5)):   # config.json is anyone's: a number where a path belongs
        run, _ = _run(tmp_path / "runs", name, combine="sum", seed=0, skill=0.6)
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "model_dir": model_dir}))
    recipes, _, _ = compare([tmp_path / "runs"], resamples=100, seed=1)
    assert sorted(r.label for r in recipes) == sorted(
        [f"model-dir={DEFAULT_BACKBONE}", "model-dir=all-mpnet-base-v2", "model-dir=my-bert", "model-dir=5"])


def test_a_long_label_is_plotted_in_lines_broken_after_its_commas():
    from mtcli.eval.compare_report import _wrapped

    label = ", ".join(f"option-{i}=value-{i}" for i in range(12))
    lines = _wrapped(label).splitlines()
    assert len(lines) > 1 and all(len(line) <= 50 for line in lines) and " ".join(lines) == label
    assert all(line.endswith(",") for line in lines[:-1])


def test_recipes_over_seeds_and_the_bootstrap_against_a_literal_one(tmp_path):
    totals = {}
    for seed in range(3):
        for combine, skill in (("sum", 0.6), ("upgrad", 0.62), ("mgda", 0.3)):
            _, totals[combine, seed] = _run(tmp_path / "runs", f"{combine}-{seed}", combine=combine, seed=seed,
                                            skill=skill)
    recipes, comparisons, unfinished = compare([tmp_path / "runs"], resamples=2000, seed=1)
    assert unfinished == []
    assert [r.label for r in recipes] == ["combine=upgrad", "combine=sum", "combine=mgda"]
    assert recipes[0].overall == pytest.approx(mean_interval([totals["upgrad", s] for s in range(3)]))
    close, far = comparisons
    assert far.other is recipes[2] and far.p < 0.002 and far.significant and far.low > 0
    assert close.difference == pytest.approx(recipes[0].overall[0] - recipes[1].overall[0])

    # the same bootstrap written out in numpy: resample each task's examples, recompute both recipes'
    # mean overall (sst and para accuracy, sts Pearson r as (r + 1) / 2)
    labels = _labels()
    runs = {c: [read_dev_predictions(tmp_path / "runs" / f"{c}-{s}" / FILE).predictions for s in range(3)]
            for c in ("upgrad", "sum")}

    def literal_overall(p, rows):
        sst, para, sts = rows["sst"], rows["para"], rows["sts"]
        r = np.corrcoef(p["sts"][sts], labels["sts"][sts])[0, 1]
        return np.mean([np.mean(p["sst"][sst].argmax(1) == labels["sst"][sst]),
                        np.mean((p["para"][para] > 0.5) == labels["para"][para]), (r + 1) / 2])

    rng, draws = np.random.default_rng(7), []
    for _ in range(2000):
        rows = {t: rng.integers(0, n, n) for t, n in SIZES.items()}
        draws.append(np.mean([literal_overall(p, rows) for p in runs["upgrad"]])
                     - np.mean([literal_overall(p, rows) for p in runs["sum"]]))
    low, high = np.percentile(draws, [2.5, 97.5])
    assert (close.low, close.high) == pytest.approx((low, high), abs=0.006)
    literal_p = min(1.0, 2 * (min(np.sum(np.array(draws) <= 0), np.sum(np.array(draws) >= 0)) + 1) / 2001)
    assert close.p == pytest.approx(literal_p, abs=0.06)
    assert [close.p_holm, far.p_holm] == holm([close.p, far.p])

    # each task's headline on its own: the difference of the recipes' mean headline (raw: sts is
    # Pearson r), its interval from resampling that task's examples alone
    for task in SIZES:
        assert close.tasks[task][0] == pytest.approx(recipes[0].tasks[task][0] - recipes[1].tasks[task][0])

    def literal_r(p, rows):
        return np.corrcoef(p["sts"][rows], labels["sts"][rows])[0, 1]

    rng, draws = np.random.default_rng(11), []
    for _ in range(2000):
        rows = rng.integers(0, SIZES["sts"], SIZES["sts"])
        draws.append(np.mean([literal_r(p, rows) for p in runs["upgrad"]]) - np.mean([literal_r(p, rows) for p in runs["sum"]]))
    assert close.tasks["sts"][1:] == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])), abs=0.01)


def test_compare_writes_tables_that_read_back_and_keeps_foreign_files(tmp_path, monkeypatch):
    for seed in range(2):
        _run(tmp_path / "runs", f"sum-{seed}", combine="sum", seed=seed, skill=0.6)
        _run(tmp_path / "runs", f"mgda-{seed}", combine="mgda", seed=seed, skill=0.3)
    done = run_cli("compare", tmp_path / "runs", "--out", tmp_path / "cmp", "--resamples", "200")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"combine=sum" in done.stdout and b"*" in done.stdout
    rows = list(csv.reader((tmp_path / "cmp" / "compare.csv").open(newline="")))
    assert rows[0][:2] == ["recipe", "seeds"] and rows[1][0] == "combine=sum" and rows[2][-2] == "True"
    assert rows[0][2:7] == ["sst_mean", "sst_ci", "sst_difference", "sst_difference_low", "sst_difference_high"]
    assert rows[1][4:7] == ["", "", ""] and float(rows[2][5]) < float(rows[2][4]) < float(rows[2][6])
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| combine=mgda | 2 |" in markdown and "| best minus | sst | para | sts |" in markdown
    versus = json.loads((tmp_path / "cmp" / "compare.json").read_text())["recipes"][1]["versus_best"]
    assert set(versus["tasks"]) == {"sst", "para", "sts"} and float(rows[2][4]) == versus["tasks"]["sst"]["difference"]
    assert b"each task, best minus the others" in done.stdout
    for plot in ("compare-overall.png", "compare-tasks.png"):
        assert (tmp_path / "cmp" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run_cli("compare", tmp_path / "runs", "--out", tmp_path / "cmp", "--resamples", "200")
    assert again.returncode == 0   # its own files: replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "compare.md").write_text("my notes")
    refused = run_cli_here("compare", tmp_path / "runs", "--out", tmp_path / "mine")
    assert refused.returncode == 2 and b"is not a folder `mtcli compare` wrote" in refused.stderr
    assert (tmp_path / "mine" / "compare.md").read_text() == "my notes"


def test_hostile_run_folders_are_one_line_errors(tmp_path):
    run, _ = _run(tmp_path / "runs", "a", combine="sum", seed=0, skill=0.6)
    _run(tmp_path / "runs", "b", combine="mgda", seed=0, skill=0.6)
    (run / FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(UserError, match="damaged or not mtcli's"):
        compare([tmp_path / "runs"])
    (run / FILE).unlink()
    with pytest.raises(UserError, match="not found"):
        compare([tmp_path / "runs"])
    (run / "eval.json").write_text(json.dumps({"headline": {"sst": "high"}, "overall": 1}))
    with pytest.raises(UserError, match="damaged or not mtcli's"):
        compare([tmp_path / "runs"])
    (tmp_path / "empty" / "deep" / "er").mkdir(parents=True)
    with pytest.raises(UserError, match="holds no finished run"):
        compare([tmp_path / "empty"])


def test_unfinished_set_aside_and_doubled_runs_are_not_counted(tmp_path):
    trials = tmp_path / "sweep" / "trials"
    totals = [_run(trials, f"0000-s{seed}", combine="sum", seed=seed, skill=0.6)[1] for seed in range(2)]
    _run(trials, "0001-s0", combine="mgda", seed=0, skill=0.3)
    running, _ = _run(trials, "0001-s1", combine="mgda", seed=1, skill=0.9, epochs_done=1)   # a kill stopped it
    _run(trials / "stopped", "0000-s1", combine="sum", seed=1, skill=0.9)   # set aside by a sweep's resume
    pruned, _ = _run(trials, "0002-s0", combine="cagrad", seed=0, skill=0.9, epochs_done=1)
    reason = "pruned at step 10 (overall 0.4000) [/x]"   # brackets: text from a log, never rich markup
    with open(pruned / "metrics.jsonl", "a") as log:   # as the trainer logs a pruner's stop
        log.write(json.dumps({"type": "stopped", "step": 10, "reason": reason}) + "\n")
    recipes, comparisons, unfinished = compare([trials], resamples=200)
    assert [(run.path, run.stopped) for run in unfinished] == [(running, None), (pruned, reason)]
    assert [len(r.runs) for r in recipes] == [2, 1] and recipes[0].overall[0] == pytest.approx(np.mean(totals))
    done = run_cli("compare", trials, "--out", tmp_path / "cmp", "--resamples", "200")
    shown = " ".join(done.stdout.decode().split())   # rich wraps long lines
    assert done.returncode == 0 and "left out 1 run(s) that did not train to their end" in shown
    assert "0001-s1" in shown and "left out 1 run(s) stopped on a dev evaluation (a sweep's pruner)" in shown
    assert "0002-s0 (pruned at step 10 (overall 0.4000) [/x])" in shown
    with pytest.raises(UserError, match="same recipe and seed"):   # one seed passed twice
        compare([trials, trials / "stopped" / "0000-s1"])
    with pytest.raises(UserError, match="trained to its end"):
        compare([running])



def test_a_run_older_than_an_option_is_one_recipe_with_a_newer_run_at_its_default(tmp_path):
    """config.json lists the options of the mtcli that wrote it: a run from before distillation
    has no `teacher`. It trained with the option's default, so it groups with newer runs that
    write the default, and apart from a run that set the option."""
    from mtcli.train.config import option_defaults

    defaults = option_defaults()
    for seed in range(2):
        _run(tmp_path / "runs", f"old-{seed}", combine="sum", seed=seed, skill=0.6)   # no teacher options
    for name, seed, teacher in (("new-2", 2, []), ("student-0", 0, ["/teachers/mpnet"]),
                                ("student-1", 1, ["/teachers/mpnet"])):
        run, _ = _run(tmp_path / "runs", name, combine="sum", seed=seed, skill=0.62)
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, **{k: defaults[k] for k in (
            "teacher_annealing", "teacher_temperature", "distill_embeddings")}, "teacher": teacher}))
    recipes, _, _ = compare([tmp_path / "runs"], resamples=100, defaults=defaults)
    assert sorted((r.label, sorted(run.path.name for run in r.runs)) for r in recipes) == [
        ("teacher=mpnet", ["student-0", "student-1"]), ("teacher=none", ["new-2", "old-0", "old-1"])]
    without, = [r for r in compare([tmp_path / "runs"], resamples=100)[0] if "old-0" in str(r.runs[0].path)]
    assert len(without.runs) == 2   # without the defaults the old runs are a recipe of their own
    done = run_cli("compare", tmp_path / "runs", "--out", tmp_path / "cmp", "--resamples", "100")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(open(tmp_path / "cmp" / "compare.csv")))
    assert sorted(row["recipe"] for row in rows) == ["teacher=mpnet", "teacher=none"]


# ---------------------------------------------------------------- run folders from an attacker (#47)

def _two_recipes(folder):
    for seed in range(2):
        _run(folder, f"sum-{seed}", combine="sum", seed=seed, skill=0.6)
        _run(folder, f"mgda-{seed}", combine="mgda", seed=seed, skill=0.3)
    return folder


def test_compare_never_writes_through_links_planted_in_out(tmp_path):
    runs = _two_recipes(tmp_path / "runs")
    out = tmp_path / "out"
    out.mkdir()
    (out / "compare.json").write_text(json.dumps({"format": "mtcli-compare/1"}))
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (out / "compare.md").symlink_to(victim)
    (out / "compare-tasks.png").symlink_to(tmp_path / "planted.png")
    refused = run_cli_here("compare", runs, "--out", out, "--resamples", "100")
    assert refused.returncode == 2 and b"compare-tasks.png: is a link" in refused.stderr, refused.stderr
    assert victim.read_text() == "mine" and not (tmp_path / "planted.png").exists()
    assert (out / "compare.md").is_symlink()


def test_compare_refuses_an_input_run_as_out(tmp_path):
    runs = _two_recipes(tmp_path / "runs")
    before = sorted(p.name for p in (runs / "sum-0").iterdir())
    for out in (runs / "sum-0", runs / "sum-0" / "cmp"):
        refused = run_cli_here("compare", runs, "--out", out, "--resamples", "100")
        assert refused.returncode == 2 and b"one of the runs compared" in refused.stderr, refused.stderr
    assert sorted(p.name for p in (runs / "sum-0").iterdir()) == before


def test_compare_checks_eval_json_against_the_predictions(tmp_path):
    runs = _two_recipes(tmp_path / "runs")
    evaluation = json.loads((runs / "mgda-1" / "eval.json").read_text())
    (runs / "mgda-1" / "eval.json").write_text(json.dumps({**evaluation, "overall": 1e308}))
    with pytest.raises(UserError, match="outside its range"):
        compare([runs], resamples=100)
    (runs / "mgda-1" / "eval.json").write_text(json.dumps({**evaluation, "headline": {
        **evaluation["headline"], "sst": 0.99}, "overall": 0.9}))
    with pytest.raises(UserError, match="says sst accuracy 0.99, but the run's dev predictions give"):
        compare([runs], resamples=100)
    (runs / "mgda-1" / "eval.json").write_text(json.dumps(evaluation))
    tasks, labels = builtin(), _labels()
    forged = _predictions(0.3, 1)
    forged["sts"] = forged["sts"].copy()
    forged["sts"][0] = 1e30
    splits = {t: SimpleNamespace(task=tasks[t], labels=list(labels[t])) for t in tasks}
    write_dev_predictions(runs / "mgda-1", splits, forged, epoch=2)
    with pytest.raises(UserError, match="says sts pearson"):
        compare([runs], resamples=100)


def test_names_from_run_folders_are_plain_text_in_plots(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(2):
        _run(runs, f"a-{seed}", combine="$\\foo{$", seed=seed, skill=0.6)
        _run(runs, f"b-{seed}", combine="sum", seed=seed, skill=0.3)
    done = run_cli("compare", runs, "--out", tmp_path / "cmp", "--resamples", "100")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "combine=$\\foo{$" in (tmp_path / "cmp" / "compare.md").read_text()
    assert (tmp_path / "cmp" / "compare-tasks.png").read_bytes()[:4] == b"\x89PNG"
