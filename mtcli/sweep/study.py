"""`mtcli sweep`: a search over recipes with Optuna (its samplers, pruners and journal storage),
every trial one or more ordinary run folders.

    sweeps/<name>/
      space.toml          the space file the sweep was started with (a resumed sweep reads it)
      study.journal       Optuna's journal storage: every trial, its parameters, reports and state
      trials/<NNNN>-s<seed>/   the trial's run folder per seed (`mtcli report`, `export`, `compare` work on it)
      trials/stopped/...  what a kill left that a restarted trial could not continue (kept, out of compare's reach)
      sweep.json          the trials and the best one, rewritten after every trial

A trial's value is the mean over `seeds` of its runs' best dev objective (overall, or one task's
headline). The pruner reads the first seed's dev evaluations (every `eval-every` steps and at
epoch ends), each at the examples a batch slot had seen by then (steps x batch size: trials of
different batch sizes are judged at the same amount of training, not the same step count); a
pruned trial's later seeds do not run. `--resume` continues a killed sweep:
finished and pruned trials are kept, a trial that was running restarts with the same
parameters and continues its run folders (a finished seed is kept, an interrupted one goes on
from its last checkpoint), and the sweep stops when `trials` trials have finished or been pruned.
`--parallel K` runs K worker processes on the same journal, the cores divided between them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mtcli.core.errors import UserError, excerpt
from mtcli.core.fileio import open_append, write_json, write_text
from mtcli.run.folder import CHANGEABLE_ON_RESUME, METRICS, SET_ASIDE, differences, read_config, read_eval
from mtcli.run.journal import STUDY, load_study, open_journal, optuna_module
from mtcli.run.metrics_log import read_metrics
from mtcli.sweep.space import Range, Space, read_space
from mtcli.train.recipe import write_recipe

DONE_STATES = ("COMPLETE", "PRUNED")
FAILED_IN_A_ROW = 3   # trials failing one after another with a user error: the sweep stops, saying why





def sampler_for(space: Space, stream: tuple[int, ...] = ()):
    """The space's Optuna sampler, seeded with its first seed; both engines search with it.
    `stream` (the trials the study already holds, the worker's number) seeds TPE and random
    search in a process that joins a study with trials, or a second worker: a seeded sampler in
    a fresh process starts its draws over, so a resumed or parallel process would otherwise
    repeat the first one's trials. Not the grid: its seed orders the grid points, which every
    process must number alike (the journal records which ones ran)."""
    optuna = optuna_module()
    seed = space.seeds[0]
    if space.search == "grid":
        return optuna.samplers.GridSampler({option.replace("_", "-"): [json.dumps(c) for c in choices]
                                            for option, choices in space.params.items()}, seed=seed)
    if any(stream):
        seed = int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])
    return (optuna.samplers.TPESampler if space.search == "tpe" else optuna.samplers.RandomSampler)(seed=seed)


def open_study(folder: Path, space: Space, worker: int = 0, *, repair: bool = False, on_repair=None):
    """The sweep's study, its sampler seeded for this process (`worker`: its number under --parallel).
    `repair`: cut a torn last line off the journal first (the process that resumes the sweep)."""
    optuna = optuna_module()
    pruners = {"asha": lambda: optuna.pruners.SuccessiveHalvingPruner(),
               "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2),
               "none": lambda: optuna.pruners.NopPruner()}
    pruner = pruners[space.pruner]()
    try:   # create_study(load_if_exists=True) would append a create record to the journal on every open
        study = load_study(folder, repair=repair, on_repair=on_repair, pruner=pruner)
    except KeyError:
        study = optuna.create_study(study_name=STUDY, storage=open_journal(folder), direction="maximize",
                                    load_if_exists=True, pruner=pruner)
    study.sampler = sampler_for(space, (len(study.get_trials(deepcopy=False)), worker))
    return study


def run_name(number: int, seed: int) -> str:
    """A trial's run folder under trials/, whichever engine ran it."""
    return f"{number:04d}-s{seed}"


def runs_of(folder: Path, number: int) -> list[str]:
    return sorted(str(p) for p in (folder / "trials").glob(f"{number:04d}-s*") if p.is_dir())


def suggest(trial, space: Space) -> dict:
    """The trial's values of the space's options (choices travel as JSON text through Optuna)."""
    values = {}
    for option, choices in space.params.items():
        key = option.replace("_", "-")
        if isinstance(choices, Range):
            if choices.step is not None:
                values[option] = trial.suggest_int(key, int(choices.low), int(choices.high), step=choices.step,
                                                   log=choices.log)
            else:
                values[option] = trial.suggest_float(key, choices.low, choices.high, log=choices.log)
        else:
            values[option] = json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in choices]))
    return values


def objective_value(space: Space, results: dict) -> float | None:
    if space.objective == "overall":
        return results.get("overall")
    return results.get("headline", {}).get(space.objective)


def train_seeds(space: Space, values: dict, folder: Path, number: int, console, on_first_eval,
                continues: int | None = None) -> tuple[float, int]:
    """Train one configuration once per seed into the trial's run folders (either engine); the
    first seed's dev evaluations go to `on_first_eval(seen, value)` (the pruner or scheduler),
    `seen` the examples a batch slot had seen (step x batch size), but for a one-seed trial's
    last: stopping there would save nothing, and the trial completes with its best epoch's
    score instead of being marked pruned with its last one's.
    `continues`: the number of a trial with these values that a kill stopped; its run folders
    become this trial's (carried_run), a finished one counted as it is, an interrupted one
    continued from its last checkpoint. The mean of the runs' dev objective, and the examples a
    batch slot of the last run saw in all."""
    from mtcli.train.loop import Trainer

    def report(step: int, results: dict, *, first: bool, batch: int, last_step: int) -> None:
        value = objective_value(space, results)
        trial_ends = len(space.seeds) == 1 and step >= last_step
        if first and value is not None and not trial_ends:
            on_first_eval(step * batch, value)

    scores = []
    for i, seed in enumerate(space.seeds):
        config = space.config(values, name=run_name(number, seed), out=str(folder / "trials"), seed=seed)
        carried = carried_run(folder, continues, seed, config, console)
        if carried is not None:
            trainer = Trainer.resume(carried, console, settings={k: getattr(config, k) for k in CHANGEABLE_ON_RESUME})
        else:
            trainer = Trainer(config, console)
        on_eval = functools.partial(report, first=i == 0, batch=config.batch_size, last_step=trainer.total_steps)
        trainer.dev.on_eval = on_eval   # the pruner reads every dev evaluation
        if carried is not None:
            for record in read_metrics(carried / METRICS) if (carried / METRICS).is_file() else []:
                if record.get("type") in ("eval", "epoch") and record.get("step", 0) <= trainer.position.step:
                    on_eval(record["step"], record)   # what the pruner had read of it before the kill
        trainer.run()
        value = objective_value(space, read_eval(trainer.run_dir) or {})
        if value is None:
            raise UserError(f"{trainer.run_dir}: the run has no dev {space.objective} score")
        scores.append(value)
    return float(sum(scores) / len(scores)), trainer.total_steps * config.batch_size


def carried_run(folder: Path, continues: int | None, seed: int, config, console) -> Path | None:
    """The stopped trial's run folder for `seed`, renamed to this trial's, when it is a run of
    this very configuration (its config.json, but for the name and folder); anything else it left (a
    folder a kill cut short before config.json, a configuration that differs) moves to
    trials/stopped/ and the seed starts afresh."""
    if continues is None:
        return None
    earlier = folder / "trials" / run_name(continues, seed)
    if not earlier.is_dir():
        return None
    here = folder / "trials" / config.name
    saved = read_config(earlier)   # None if a kill came before it was written
    wanted = json.loads(json.dumps(config.to_dict()))
    # where the run went (the sweep folder may have moved) and how it computes and saves, not what it is
    if saved is not None and not differences(saved, wanted) and not here.exists():
        earlier.rename(here)   # config.json keeps the name it was started with; compare ignores names
        write_recipe(here, config)   # its header names the folder `mtcli train --config` reads it from
        console.print(f"[bold]continue[/] {here} (was {earlier.name})")
        return here
    set_aside(folder, earlier)
    return None


def run_trial(trial, space: Space, folder: Path, console) -> float:
    """Optuna's trial in this process: its values suggested, the pruner fed the first seed's
    evaluations. Values a finished trial had already (a random or TPE search may draw them again)
    are not trained twice: the trial takes that trial's value and says whose (`same_as`), so
    its runs stay one recipe's, once per seed. A trial that fails with a user error says so in one
    line and is marked failed (its message in `error`)."""
    optuna = optuna_module()

    def report(seen: int, value: float) -> None:
        trial.report(value, seen)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after {seen} examples a batch slot ({space.objective} {value:.4f})")

    values = suggest(trial, space)
    for earlier in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if earlier.params == trial.params and earlier.value is not None:
            trial.set_user_attr("same_as", earlier.number)
            console.print(f"[bold]trial {trial.number}[/] the values of trial {earlier.number}: its score, not trained "
                          f"again")
            return earlier.value
    try:
        return train_seeds(space, values, folder, trial.number, console, report,
                           continues=trial.user_attrs.get("continues"))[0]
    except UserError as e:
        trial.set_user_attr("error", str(e))   # optimize says it in one line; Optuna marks the trial failed
        raise


def prepare(space_path: Path, folder: Path, resume: bool, say=print) -> Space:
    """The sweep folder: a new one (the space file copied in), or a killed one to resume, whose
    trials that were running restart with the same values, continuing their run folders."""
    journal_file = folder / "study.journal"
    if resume:
        if not journal_file.is_file():
            raise UserError(f"{folder}: no sweep to resume here (no study.journal); start it without --resume")
        space = read_space(folder / "space.toml")
        study = open_study(folder, space, repair=True, on_repair=say)
        unchanged(study, space, folder / "space.toml")
        optuna = optuna_module()
        restarted = set(study.user_attrs.get("restarted", []))
        repeats = set(study.user_attrs.get("repeats", []))
        done = [t.params for t in study.get_trials(deepcopy=False) if t.state.name in DONE_STATES]
        for trial in study.get_trials(deepcopy=False):
            if trial.state.name == "RUNNING":
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            if trial.state.name in ("RUNNING", "FAIL") and trial.number not in restarted and trial.params:
                if trial.params in done:   # the same values finished already: its runs would repeat theirs
                    for run in runs_of(folder, trial.number):
                        set_aside(folder, Path(run))
                    repeats.add(trial.number)
                else:
                    study.enqueue_trial(trial.params, user_attrs={"continues": trial.number,
                                                                  **({"start": True} if trial.user_attrs.get("start") else {})})
                restarted.add(trial.number)
        study.set_user_attr("restarted", sorted(restarted))
        study.set_user_attr("repeats", sorted(repeats))
        enqueue_start(study, space)
        return space
    space = start_folder(space_path, folder)
    study = open_study(folder, space)
    study.set_user_attr("space", what_is_searched(space))
    if space.start:
        enqueue_start(study, space)
    return space


def what_is_searched(space: Space) -> dict:
    """What a sweep's trials must share to be one study: everything of the space file but `start`
    and the budget's options that say how a trial computes and saves (CHANGEABLE_ON_RESUME)."""
    params = {option.replace("_", "-"): choices if isinstance(choices, list) else dataclasses.asdict(choices)
              for option, choices in space.params.items()}
    base = {option.replace("_", "-"): value for option, value in space.base.items() if option not in CHANGEABLE_ON_RESUME}
    record = {"objective": space.objective, "search": space.search, "trials": space.trials, "seeds": space.seeds,
              "pruner": space.pruner, "eval-every": space.eval_every, "budget": base, "space": params}
    return json.loads(json.dumps(record, default=str))


def unchanged(study, space: Space, path: Path) -> None:
    """Refuse to resume a sweep whose space file was edited in what its trials share (another
    budget, objective, search or [space] key would mix two searches in one study), naming what
    changed; `start` and the budget's activation-checkpointing and save-every may change."""
    recorded, now = study.user_attrs.get("space"), what_is_searched(space)
    if not isinstance(recorded, dict):
        study.set_user_attr("space", now)   # a sweep started before this record was kept
        return
    changed = []
    for key in dict.fromkeys([*recorded, *now]):
        before, after = recorded.get(key), now.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changed += [f"{key} {option}: {excerpt(before.get(option))} -> {excerpt(after.get(option))}"
                        for option in dict.fromkeys([*before, *after]) if before.get(option) != after.get(option)]
        elif before != after:
            changed.append(f"{key}: {excerpt(before)} -> {excerpt(after)}")
    if changed:
        raise UserError(f"{path}: changed since the sweep started ({'; '.join(changed[:3])}"
                        f"{f'; and {len(changed) - 3} more' if len(changed) > 3 else ''}); a study holds one search: "
                        f"undo the change, or start a new sweep with another --name (only start, and the budget's "
                        f"activation-checkpointing and save-every, may change on --resume)")


def start_params(values: dict, space: Space) -> dict:
    """A point of the space as Optuna's trial parameters (choices as the JSON text `suggest` uses)."""
    return {option.replace("_", "-"): json.dumps(values[option]) if isinstance(choices, list) else values[option]
            for option, choices in space.params.items()}


def enqueue_start(study, space: Space) -> None:
    """The space's `start` points, each queued once in the study's life: on a new sweep they are
    its first trials; points added to the sweep folder's space.toml run next on --resume. A point
    some trial already ran with is not queued again."""
    started = list(study.user_attrs.get("started", []))
    seen = [t.params for t in study.get_trials(deepcopy=False)]
    for values in space.start:
        params = start_params(values, space)
        text = json.dumps(params, sort_keys=True)
        if text in started:
            continue
        if params not in seen:
            study.enqueue_trial(params, user_attrs={"start": True})
        started.append(text)
    study.set_user_attr("started", started)


def set_aside(folder: Path, run: Path) -> None:
    """A trial's run folder to trials/stopped/, out of compare's reach."""
    aside = folder / "trials" / SET_ASIDE
    aside.mkdir(exist_ok=True)
    run.rename(aside / run.name)


def start_folder(space_path: Path, folder: Path) -> Space:
    """A new sweep folder with the space file in it (either engine)."""
    space = read_space(space_path)
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder}: sweep folder exists; continue it with --resume, or pick another --name")
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "space.toml", _self_contained(space_path, space))
    return space


def _self_contained(space_path: Path, space: Space) -> str:
    """The space file as the sweep folder keeps it: its paths (the base recipe, the budget's
    folders and files) made absolute, so it reads the same from there."""
    import tomllib

    import tomli_w

    from mtcli.train.config import PATH_FIELDS, names_backbone
    from mtcli.train.recipe import field_keys

    here = Path(space_path).parent
    document = tomllib.loads(Path(space_path).read_text(encoding="utf-8"))
    if "base" in document:
        document["base"] = str((here / document["base"]).resolve())
    budget = document.get("budget", {})
    for key, option in field_keys().items():
        if option in PATH_FIELDS and isinstance(budget.get(key), str) and not names_backbone(option, budget[key]):
            budget[key] = str((here / Path(budget[key]).expanduser()).resolve())
    return tomli_w.dumps(document)


def finished(study) -> int:
    return sum(t.state.name in DONE_STATES for t in study.get_trials(deepcopy=False))


def finished_or_running(study) -> int:
    """Trials done and trials other workers are training now (a kill's leftovers were marked
    failed by prepare): a worker starts another only while these fall short of the plan."""
    return sum(t.state.name in (*DONE_STATES, "RUNNING") for t in study.get_trials(deepcopy=False))


def interrupted(study) -> set[int]:
    """The trials a kill stopped that a later trial continues (prepare marked them on --resume)."""
    return set(study.user_attrs.get("restarted", [])) - repeats(study)


def repeats(study) -> set[int]:
    """The trials a kill stopped whose values another trial had finished: set aside, not continued."""
    return set(study.user_attrs.get("repeats", []))


def summary(study, folder: Path, space: Space, engine: str = "local") -> dict:
    """sweep.json: every trial of the journal (state, value, parameters, run folders) and the best."""
    trials = []
    for t in study.get_trials(deepcopy=False):
        trials.append({"number": t.number, "state": t.state.name, "value": t.value,
                       "params": {k: json.loads(v) if isinstance(v, str) else v for k, v in t.params.items()},
                       "start": bool(t.user_attrs.get("start")), "runs": runs_of(folder, t.number)})
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    best = max(done, key=lambda t: t["value"]) if done else None
    record = {"format": "mtcli-sweep/1", "engine": engine, "objective": space.objective, "search": space.search,
              "pruner": space.pruner, "trials": trials, "best": best}
    write_json(folder / "sweep.json", record)
    return record


def optimize(folder: Path, space: Space, console, progress=None, worker: int = 0, say=None) -> None:
    """Run trials in this process until `trials` have finished or been pruned, or the rest are
    running in other workers (which is why a parallel grid search does not run a grid point
    twice); `progress()` is called after each, `say(line)` hears each trial that failed. After
    FAILED_IN_A_ROW trials in a row failed the sweep stops with a UserError. `worker`: this
    process's number under --parallel."""
    study = open_study(folder, space, worker)

    def stop_when_done(study, trial) -> None:
        if say is not None and trial.state.name == "FAIL" and "error" in trial.user_attrs:
            say(f"trial {trial.number} failed: {trial.user_attrs['error']}")
        summary(study, folder, space)
        if progress is not None:
            progress()
        if finished_or_running(study) >= space.planned_trials() or failing(study):
            study.stop()

    if finished_or_running(study) >= space.planned_trials():
        return
    study.optimize(lambda trial: run_trial(trial, space, folder, console), callbacks=[stop_when_done],
                   catch=(UserError,))
    stopped = failing(study)
    if stopped:
        raise UserError(f"{folder}: stopped after {len(stopped)} trials in a row failed, the last with: "
                        f"{stopped[-1].user_attrs['error']}; fix the space file and start the sweep again")


def failing(study) -> list:
    """The last trials, if the last FAILED_IN_A_ROW of them failed with a user error (a trial a kill
    stopped is no failure of its recipe): what stops the sweep instead of failing forever."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    tail = [t for t in trials[-FAILED_IN_A_ROW:] if t.state.name == "FAIL" and "error" in t.user_attrs]
    return tail if len(tail) == FAILED_IN_A_ROW else []


def launch_workers(folder: Path, count: int) -> list[subprocess.Popen]:
    """K-1 more worker processes on the same journal, each with its share of the cores; this
    process, the K-th worker, keeps its own share (not all of them, which would oversubscribe)."""
    import torch

    threads = max(1, (os.cpu_count() or 1) // count)
    torch.set_num_threads(threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return [subprocess.Popen([sys.executable, "-m", "mtcli", "sweep", str(folder / "space.toml"), "--worker", str(i),
                              "--folder", str(folder)], env=env, stdout=subprocess.DEVNULL,
                             stderr=open_append(folder / f"worker-{i}.log", binary=True))
            for i in range(1, count)]


def wait_for(workers: list[subprocess.Popen], poll: float = 1.0, progress=None, every: float = 10.0) -> None:
    """Until the workers end, calling `progress()` every `every` seconds (their trials go on)."""
    shown = time.monotonic()
    while any(w.poll() is None for w in workers):
        time.sleep(poll)
        if progress is not None and time.monotonic() - shown >= every:
            progress()
            shown = time.monotonic()


__all__ = ["open_study", "sampler_for", "run_name", "runs_of", "optimize", "prepare", "start_folder",
           "summary", "launch_workers", "wait_for", "finished_or_running"]
