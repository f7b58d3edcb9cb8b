"""`mtcli sweep --engine ray`: the same sweep on Ray Tune, on a local Ray instance or a cluster
(`--ray-address HEAD:6379`). The search is the local engine's: the same Optuna study in the
sweep folder's journal (study.journal), asked for trials through Tune's OptunaSearch (grid,
random or TPE; the space defined by run, as `study.suggest` defines it); ASHA or the median
stopping rule run as Tune schedulers on the dev evaluations; each trial is a Tune function
trainable with its share of the CPUs (`--parallel K` trials at once), training the trial's
configuration once per seed into the local engine's run folders (`trials/<NNNN>-s<seed>/`).

`--resume` reads only the journal (JSON lines), as the local engine does: finished and
pruned trials are kept and inform the search, trials that were running restart with their
parameters and continue their run folders. Tune's own experiment state (pickled, in `ray/`)
is written by Tune and never read back. On a cluster the sweep folder must be on a file
system every node shares.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from mtcli.core.errors import UserError
from mtcli.sweep.space import Space

METRIC = "objective"
RESOURCE = "examples"   # what the schedulers measure training in: examples a batch slot has seen (study.train_seeds)
FINISHED = "mtcli_trial_finished"   # in a trial's last report only (Tune sets its own "done" on a stopped trial too)


def _tune():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise UserError("--engine ray needs Ray Tune: pip install 'mtcli[ray,sweep]'") from None
    from mtcli.inference.ray_data import quiet_ray

    quiet_ray()
    return ray, tune


def define(trial, space: Space) -> dict:
    """The define-by-run space: the trial's values suggested as the local engine suggests them,
    its number in the study (which names its run folders) and the stopped trial it continues."""
    from mtcli.sweep.study import suggest

    suggest(trial, space)
    return {"number": trial.number, "continues": trial.user_attrs.get("continues")}


def values_of(params: dict, space: Space) -> dict:
    """A Tune config (Optuna's suggested values, choices as JSON text) as the space's option values."""
    import json

    return {option: (json.loads(params[option.replace("_", "-")]) if isinstance(choices, list)
                     else params[option.replace("_", "-")])
            for option, choices in space.params.items()}


def mtcli_trial(params: dict, space_path: str, folder: str, cpus: int) -> None:
    """One trial in a Ray worker: each seed's run, the first seed's evaluations reported to the scheduler."""
    import torch
    from ray import tune
    from rich.console import Console

    from mtcli.sweep.space import read_space
    from mtcli.sweep.study import train_seeds

    torch.set_num_threads(max(1, cpus))
    space = read_space(space_path)   # the sweep folder's copy
    mean, seen = train_seeds(space, values_of(params, space), Path(folder), params["number"], Console(quiet=True),
                             lambda seen, value: tune.report({METRIC: value, RESOURCE: seen}),
                             continues=params.get("continues"))
    tune.report({METRIC: mean, RESOURCE: seen, FINISHED: True})


def run(folder: Path, space: Space, *, parallel: int, address: str | None, progress=None) -> None:
    """Run the sweep folder's trials that are left on Ray Tune; `progress()` is called as trials
    start and end (the journal holds their states)."""
    ray, tune = _tune()
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    from mtcli.sweep.study import finished, open_study

    study = open_study(folder, space)
    left = space.planned_trials() - finished(study)
    if left <= 0:
        return
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else max(1, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // parallel)
    function = tune.with_resources(
        tune.with_parameters(mtcli_trial, space_path=str((folder / "space.toml").resolve()),
                             folder=str(folder.resolve()), cpus=cpus), {"cpu": cpus})
    budget = space.config({}, name="check", out=".", seed=space.seeds[0])   # the base recipe and budget
    steps, batches = budget.max_steps, batch_sizes(space, budget.batch_size)
    # max_t past the most a trial can see: ASHA stops a trial that reports max_t, which would cut
    # the first seed's run at its last evaluation, before the other seeds and the trial's own result
    schedulers = {"asha": lambda: ASHAScheduler(time_attr=RESOURCE, max_t=steps * max(batches) + 1 if steps else 10**12,
                                                grace_period=max(1, space.eval_every or 1) * min(batches)),
                  "median": lambda: MedianStoppingRule(time_attr=RESOURCE, min_samples_required=2),
                  "none": lambda: FIFOScheduler()}
    search = searcher(folder, space, study.sampler)
    storage = (folder / "ray").resolve()
    attempt = sum(1 for p in storage.glob("tune-*")) + 1 if storage.is_dir() else 1
    tuner = tune.Tuner(
        function,
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", search_alg=search, scheduler=schedulers[space.pruner](),
                                    num_samples=left, max_concurrent_trials=parallel),
        run_config=tune.RunConfig(name=f"tune-{attempt}", storage_path=str(storage), verbose=0,
                                  callbacks=[_Progress(progress)] if progress is not None else []))
    tuner.fit()


def batch_sizes(space: Space, budget: int) -> list[int]:
    """The batch sizes the space's trials can have: its choices or range ends, else the budget's."""
    from mtcli.sweep.space import Range

    searched = space.params.get("batch_size")
    if isinstance(searched, Range):
        return [int(searched.low), int(searched.high)]
    return list(searched) if searched else [budget]


def searcher(folder: Path, space: Space, sampler):
    """Tune's searcher over the sweep folder's study (its journal), asking `sampler`."""
    from mtcli.run.journal import STUDY, open_journal

    return _search_class()(space=functools.partial(define, space=space), sampler=sampler,
                           storage=open_journal(folder), study_name=STUDY, metric=METRIC, mode="max")


def _search_class():
    """OptunaSearch that records a trial the scheduler stopped as pruned, and a trial that
    raised as failed (Tune hands both over with their last intermediate report)."""
    from ray.tune.search.optuna import OptunaSearch

    class Search(OptunaSearch):
        def on_trial_complete(self, trial_id, result=None, error=False):
            finished = bool(result) and bool(result.get(FINISHED)) and not error
            super().on_trial_complete(trial_id, result if finished else None, error)

        def save(self, checkpoint_path: str) -> None:   # the journal is the search's state: no pickle
            pass

        def restore(self, checkpoint_path: str) -> None:
            raise RuntimeError("an mtcli sweep resumes from its journal (mtcli sweep --resume)")

    return Search


def _progress_callback_base():
    try:
        from ray.tune import Callback
    except ImportError:
        return object
    return Callback


class _Progress(_progress_callback_base()):
    """Calls the driver's `show()` (which reads the journal) as trials start and end."""

    def __init__(self, show):
        self.show = show

    def __getstate__(self):   # Tune saves its run configuration; the terminal's progress bar stays here
        return {}

    def __setstate__(self, state):
        self.show = None

    def on_trial_start(self, iteration, trials, trial, **info):
        self._update()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._update()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._update()

    def _update(self):
        if self.show is not None:
            self.show()
