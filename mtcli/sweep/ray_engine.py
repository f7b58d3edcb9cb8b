"""`mtcli sweep --engine ray`: the same sweep on Ray Tune, on a local Ray instance or a cluster
(`--ray-address HEAD:6379`). Optuna's search (TPE, random) through Ray Tune's OptunaSearch, grid
through Tune's grid_search, ASHA or the median stopping rule as Tune schedulers on the dev
evaluations; each trial a Tune function trainable with its share of the CPUs (`--parallel K`
trials at once), training the trial's configuration once per seed into the same run folders as
the local engine (`trials/<trial id>-s<seed>/`), and `sweep.json` in the same layout. Tune's own
state lies in the sweep folder's `ray/`; `--resume` restores it (finished trials kept,
interrupted and errored ones restarted). On a cluster the sweep folder must be on a file
system every node shares.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mtcli.core.errors import UserError
from mtcli.core.fileio import write_json
from mtcli.sweep.space import Range, Space

METRIC = "objective"


def _tune():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise UserError("--engine ray needs Ray Tune: pip install 'mtcli[ray,sweep]'") from None
    from mtcli.inference.ray_data import quiet_ray

    quiet_ray()
    return ray, tune


def param_space(space: Space, tune) -> dict:
    """The space in Tune's terms (choices as JSON text, as the local engine keeps them)."""
    out = {}
    for option, choices in space.params.items():
        key = option.replace("_", "-")
        if isinstance(choices, Range):
            if choices.step is not None:
                out[key] = (tune.lograndint(int(choices.low), int(choices.high) + 1) if choices.log
                            else tune.qrandint(int(choices.low), int(choices.high), choices.step))
            else:
                out[key] = (tune.loguniform if choices.log else tune.uniform)(choices.low, choices.high)
        else:
            values = [json.dumps(c) for c in choices]
            out[key] = tune.grid_search(values) if space.search == "grid" else tune.choice(values)
    return out


def values_of(params: dict, space: Space) -> dict:
    return {option: (json.loads(params[option.replace("_", "-")]) if isinstance(choices, list)
                     else params[option.replace("_", "-")])
            for option, choices in space.params.items()}


def mtcli_trial(params: dict, space_path: str, folder: str, cpus: int) -> None:
    """One trial in a Ray worker: each seed's run, the first seed's evaluations reported to the scheduler."""
    import torch
    from ray import tune
    from rich.console import Console

    from mtcli.core.fileio import read_json_dict
    from mtcli.sweep.space import read_space
    from mtcli.sweep.study import objective_value
    from mtcli.train.loop import Trainer

    torch.set_num_threads(max(1, cpus))
    space = read_space(space_path)   # the sweep folder's copy
    trial_id = tune.get_context().get_trial_id()
    values, scores = values_of(params, space), []
    for i, seed in enumerate(space.seeds):
        config = space.config(values, name=f"{trial_id}-s{seed}", out=str(Path(folder) / "trials"), seed=seed)

        def report(step: int, results: dict, first: bool = i == 0) -> None:
            value = objective_value(space, results)
            if first and value is not None:
                tune.report({METRIC: value, "step": step})

        trainer = Trainer(config, Console(quiet=True), on_eval=report)
        trainer.run()
        value = objective_value(space, read_json_dict(trainer.run_dir / "eval.json") or {})
        if value is None:
            raise UserError(f"{trainer.run_dir}: the run has no dev {space.objective} score")
        scores.append(value)
    tune.report({METRIC: sum(scores) / len(scores), "step": trainer.total_steps, "done": True})


def run(folder: Path, space: Space, *, parallel: int, address: str | None, resume: bool, progress=None) -> dict:
    """Run the sweep on Ray Tune; `progress(counts)` is called as trials report and end."""
    ray, tune = _tune()
    callbacks = [_Progress(progress)] if progress is not None else []
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else max(1, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // parallel)
    function = tune.with_resources(
        tune.with_parameters(mtcli_trial, space_path=str((folder / "space.toml").resolve()),
                             folder=str(folder.resolve()), cpus=cpus), {"cpu": cpus})
    storage = str((folder / "ray").resolve())
    if resume:
        if not (folder / "ray" / "tune").is_dir():
            raise UserError(f"{folder}: no Ray Tune state to resume (ray/tune); start the sweep without --resume")
        tuner = tune.Tuner.restore(str((folder / "ray" / "tune").resolve()), function, resume_unfinished=True,
                                   restart_errored=True)
    else:
        steps = space.config({}, name="check", out=".", seed=space.seeds[0]).max_steps
        schedulers = {"asha": lambda: ASHAScheduler(time_attr="step", max_t=steps or 10**9,
                                                    grace_period=max(1, space.eval_every or 1)),
                      "median": lambda: MedianStoppingRule(time_attr="step", min_samples_required=2),
                      "none": lambda: FIFOScheduler()}
        search = None
        if space.search != "grid":
            from optuna.samplers import RandomSampler, TPESampler
            from ray.tune.search.optuna import OptunaSearch

            sampler = (TPESampler if space.search == "tpe" else RandomSampler)(seed=space.seeds[0])
            search = OptunaSearch(sampler=sampler)
        tuner = tune.Tuner(
            function, param_space=param_space(space, tune),
            tune_config=tune.TuneConfig(metric=METRIC, mode="max", search_alg=search, scheduler=schedulers[space.pruner](),
                                        num_samples=1 if space.search == "grid" else space.trials,
                                        max_concurrent_trials=parallel),
            run_config=tune.RunConfig(name="tune", storage_path=storage, verbose=0, callbacks=callbacks))
    results = tuner.fit()
    return summary(results, folder, space)


def summary(results, folder: Path, space: Space) -> dict:
    """sweep.json as the local engine writes it: trials, states, values, parameters, run folders."""
    trials = []
    for result in results:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id", "?")   # (a trial that failed before its first report has none)
        if result.error is not None:
            state = "FAIL"
        elif metrics.get("done"):
            state = "COMPLETE"
        else:
            state = "PRUNED"   # stopped by the scheduler
        params = {k: (json.loads(v) if isinstance(v, str) else v) for k, v in (result.config or {}).items()}
        runs = sorted(str(p) for p in (folder / "trials").glob(f"{trial_id}-s*")) if trial_id != "?" else []
        trials.append({"number": trial_id, "state": state,
                       "value": metrics.get(METRIC) if state == "COMPLETE" else None, "params": params, "runs": runs})
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    best = max(done, key=lambda t: t["value"]) if done else None
    record = {"format": "mtcli-sweep/1", "engine": "ray", "objective": space.objective, "search": space.search,
              "pruner": space.pruner, "trials": trials, "best": best}
    write_json(folder / "sweep.json", record)
    return record


def _progress_callback_base():
    try:
        from ray.tune import Callback
    except ImportError:
        return object
    return Callback


class _Progress(_progress_callback_base()):
    """Counts of trials done, pruned, running and failed, and the best value, for the driver's progress bar."""

    def __init__(self, show):
        self.show, self.best = show, None

    def __getstate__(self):   # Tune saves its run configuration; the terminal's progress bar stays here
        return {"best": self.best}

    def __setstate__(self, state):
        self.show, self.best = None, state["best"]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._update(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        if result.get("done") and result.get(METRIC) is not None:
            self.best = max(self.best or -1e9, result[METRIC])
        self._update(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._update(trials)

    def _update(self, trials):
        counts = {"COMPLETE": 0, "PRUNED": 0, "RUNNING": 0, "FAIL": 0}
        for t in trials:
            if t.status == "RUNNING":
                counts["RUNNING"] += 1
            elif t.status == "ERROR":
                counts["FAIL"] += 1
            elif t.status == "TERMINATED":
                counts["COMPLETE" if (t.last_result or {}).get("done") else "PRUNED"] += 1
        if self.show is not None:
            self.show(counts, self.best)
