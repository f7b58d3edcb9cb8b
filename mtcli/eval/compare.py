"""`mtcli compare`: which recipes differ, honestly. Runs are grouped by recipe (every option but
the seed and where the run went); per recipe each task's headline and the overall score as the
mean over seeds with a 95% confidence interval (Student's t); the best recipe (highest mean
overall) against each other one by a paired bootstrap over the dev examples (every run keeps
its best epoch's dev predictions: mtcli.run.predictions), p-values corrected for the number of
comparisons by Holm's step-down method.

The bootstrap resamples each task's dev examples (independently per task, the same resample for
every run: the runs are paired by example) and recomputes the difference of the recipes' mean
overall scores; its p-value is two-sided, (1 + #resamples on the far side of 0) / (1 + #resamples),
doubled. On the same resamples, each task's headline: the difference of the recipes' mean
headline with its 95% interval (an interval, not a test: the one test per recipe is the
overall's). Everything is read from the named folders only (config.json, eval.json, metrics.jsonl,
dev-predictions.safetensors of each run), each value checked. Torch-free.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from mtcli.core.backbones import DEFAULT_BACKBONE
from mtcli.core.errors import UserError
from mtcli.core.metrics import metric_value, unit_score
from mtcli.core.typed import has_type
from mtcli.run.folder import CONFIG, EVAL, METRICS, PREDICTIONS, SET_ASIDE, read_config, read_eval, recipe_key
from mtcli.run.metrics_log import last_stop, read_metrics
from mtcli.run.predictions import DevPredictions, read_dev_predictions

LEVEL = 0.95
ALPHA = 1 - LEVEL


@dataclass
class Run:
    path: Path
    config: dict
    seed: int
    scores: dict[str, float]          # each task's headline at the best epoch
    overall: float
    curve: list[tuple[int, float]]    # (step, dev overall) of every dev evaluation
    finished: bool                    # trained to its end (a stopped run has its best epoch's eval.json too)
    stopped: str | None = None        # why on_eval (a sweep's pruner) stopped it, as its log says
    predictions: DevPredictions | None = None

    @property
    def recipe(self) -> str:
        return recipe_key(self.config)


@dataclass
class Recipe:
    runs: list[Run]
    label: str = ""
    overall: tuple[float, float | None] = (math.nan, None)           # mean, CI half-width (None: one seed)
    tasks: dict[str, tuple[float, float | None]] = field(default_factory=dict)


@dataclass
class Comparison:
    other: Recipe
    difference: float                 # best's mean overall minus the other's
    low: float                        # bootstrap 95% interval of the difference
    high: float
    p: float
    p_holm: float = math.nan
    tasks: dict[str, tuple[float, float, float]] = field(default_factory=dict)   # headline: difference, low, high

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA


def find_runs(paths: list[Path]) -> list[Path]:
    """The run folders among `paths`: each a run folder, or a folder holding run folders (a runs/
    or sweep folder; two levels down at most, no symbolic links followed; not the runs a sweep's
    resume set aside in trials/stopped/)."""
    found = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: not a folder; pass run folders or folders that hold them")
        if _is_run(path):
            found.append(path)
            continue
        children = [c for c in sorted(path.iterdir()) if c.is_dir() and not c.is_symlink() and c.name != SET_ASIDE]
        runs = [c for c in children if _is_run(c)]
        runs += [g for c in children if not _is_run(c)
                 for g in sorted(c.iterdir()) if g.is_dir() and not g.is_symlink() and _is_run(g)]
        if not runs:
            raise UserError(f"{path}: holds no finished run (a folder with config.json and eval.json); pass run "
                            f"folders or folders that hold them")
        found += runs
    return list(dict.fromkeys(found))


def _is_run(path: Path) -> bool:
    return (path / CONFIG).is_file() and (path / EVAL).is_file()


def read_run(path: Path, with_predictions: bool, defaults: dict | None = None) -> Run:
    """One finished run's record. `defaults`: each option's default, for the options its
    config.json lacks (a run written before the option existed trained with its default)."""
    config, evaluation = read_config(path), read_eval(path)
    if config is None or evaluation is None:
        raise UserError(f"{path}: {CONFIG} or {EVAL} is not a JSON object; the run folder is damaged")
    config = {**(defaults or {}), **config}
    seed = config.get("seed")
    headline, overall = evaluation.get("headline"), evaluation.get("overall")
    if not isinstance(seed, int) or not _number(overall) or not isinstance(headline, dict) \
            or not all(isinstance(k, str) and (v is None or _number(v)) for k, v in headline.items()):
        raise UserError(f"{path}: eval.json or config.json lacks its seed, headline scores or overall score; the "
                        f"run folder is damaged or not mtcli's")
    if not 0 <= overall <= 1 or not all(v is None or -1 <= v <= 1 for v in headline.values()):
        raise UserError(f"{path / EVAL}: a score outside its range (headlines lie in [-1, 1], the overall in "
                        f"[0, 1]); the run folder is damaged or not mtcli's")
    records = read_metrics(path / METRICS) if (path / METRICS).is_file() else []
    curve = [(r["step"], float(r["overall"])) for r in records    # (read_metrics checked step)
             if r.get("type") in ("epoch", "eval") and _number(r.get("overall"))]
    stop = last_stop(records)
    run = Run(path, config, seed, {k: float(v) for k, v in headline.items() if v is not None}, float(overall), curve,
              finished=_trained_to_its_end(config, records), stopped=stop["reason"] if stop else None)
    if with_predictions:
        run.predictions = read_dev_predictions(path / PREDICTIONS)
    return run


def _trained_to_its_end(config: dict, records: list[dict]) -> bool:
    """Whether metrics.jsonl shows the run's whole budget: an epoch record for its last epoch, or
    a step at its max_steps. (eval.json alone does not say it: a run writes it at every better
    epoch, so a run a kill stopped has one.) read_metrics checked each record's step and epoch."""
    epochs, max_steps = config.get("epochs"), config.get("max_steps")
    last_epoch = max((r["epoch"] for r in records if r["type"] == "epoch"), default=0)
    last_step = max((r["step"] for r in records if "step" in r), default=0)
    return (has_type(epochs, int) and last_epoch >= epochs) or (has_type(max_steps, int) and last_step >= max_steps)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean_interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95% Student-t interval (None for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), None
    half = stats.t.ppf(1 - ALPHA / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values: the i-th smallest times (m - i), made monotone, capped at 1."""
    order = np.argsort(p_values, kind="stable")
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def group(runs: list[Run]) -> list[Recipe]:
    """Runs by recipe, each recipe labeled by the options in which the recipes differ; best first."""
    by_recipe: dict[str, list[Run]] = {}
    for run in runs:
        by_recipe.setdefault(run.recipe, []).append(run)
    recipes = [Recipe(sorted(members, key=lambda r: r.seed)) for members in by_recipe.values()]
    configs = [json.loads(r.runs[0].recipe) for r in recipes]
    varying = sorted({k for c in configs for k in c if any(o.get(k) != c.get(k) for o in configs)})
    digits = {k: _digits([c.get(k) for c in configs]) for k in varying}
    for recipe, config in zip(recipes, configs):
        recipe.label = ", ".join(f"{k.replace('_', '-')}={_shown(k, config.get(k), digits[k])}" for k in varying) or "all runs"
        recipe.overall = mean_interval([r.overall for r in recipe.runs])
        tasks = dict.fromkeys(t for r in recipe.runs for t in r.scores)
        recipe.tasks = {t: mean_interval([r.scores[t] for r in recipe.runs if t in r.scores]) for t in tasks}
    return sorted(recipes, key=lambda r: -r.overall[0])


def _digits(values: list) -> int:
    """The fewest significant digits, at least 4, that show the different floats differently: a
    searched value (lr=6.650867830801159e-05) is shown as 6.651e-05, unless another recipe's
    value needs more digits to be told apart (17 tell any two doubles apart)."""
    floats = {v for v in values if isinstance(v, float)}
    return next(d for d in range(4, 18) if len({f"{v:.{d}g}" for v in floats}) == len(floats))


def _shown(option: str, value, digits: int = 17) -> str:
    if option == "model_dir" and value is None:     # no --model-dir: the packaged backbone
        return DEFAULT_BACKBONE
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "{}"
    if isinstance(value, list):   # e.g. --teacher PATH[,PATH...]: as the flag takes it
        return ",".join(_shown(option, v, digits) for v in value) or "none"
    if isinstance(value, str) and "/" in value:
        return Path(value).name
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def paired_bootstrap(best: Recipe, other: Recipe, resamples: int, seed: int) -> Comparison:
    """The difference of the recipes' mean overall scores over bootstrap resamples of the dev
    examples, and on the same resamples the difference of each task's mean headline."""
    runs = best.runs + other.runs
    reference = runs[0].predictions
    for run in runs[1:]:
        p = run.predictions
        if set(p.labels) != set(reference.labels) or any(not np.array_equal(p.labels[t], reference.labels[t])
                                                         for t in reference.labels):
            raise UserError(f"{run.path}: its dev examples differ from {runs[0].path}'s (other tasks, data or "
                            f"--limit): runs compare example by example only on the same dev sets")
    tasks = list(reference.labels)
    declared = reference.tasks

    def headlines(run: Run, rows: list[np.ndarray]) -> list[float | None]:
        return [metric_value(declared[task], declared[task].metric, run.predictions.predictions[task][index],
                             run.predictions.labels[task][index]) for task, index in zip(tasks, rows)]

    def overall(values: list[float | None]) -> float:
        units = [unit_score(declared[task], {declared[task].metric: value}) for task, value in zip(tasks, values)]
        units = [u for u in units if u is not None]
        return float(np.mean(units)) if units else math.nan

    def differences(*rows) -> np.ndarray:
        """[overall, each task's headline]: the best recipe's mean over seeds minus the other's."""
        rows = [np.asarray(r, dtype=np.int64) for r in rows]
        sides = []
        for recipe in (best, other):
            values = [headlines(run, rows) for run in recipe.runs]
            sides.append([np.mean([overall(v) for v in values]),
                          *(np.mean([math.nan if v[i] is None else v[i] for v in values]) for i in range(len(tasks)))])
        return np.asarray(sides[0], dtype=np.float64) - np.asarray(sides[1], dtype=np.float64)

    every = [np.arange(len(reference.labels[t])) for t in tasks]
    observed = differences(*every)
    result = stats.bootstrap(every, differences, n_resamples=resamples, vectorized=False, paired=False,
                             confidence_level=LEVEL, method="percentile", random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval.low, result.confidence_interval.high   # one per element of differences
    draws = result.bootstrap_distribution[0]
    far = min(int((draws <= 0).sum()), int((draws >= 0).sum()))
    p = min(1.0, 2 * (far + 1) / (len(draws) + 1))
    comparison = Comparison(other, float(observed[0]), float(low[0]), float(high[0]), p)
    for i, task in enumerate(tasks, start=1):
        if np.isfinite([observed[i], low[i], high[i]]).all():   # else undefined on these examples (r of a constant)
            comparison.tasks[task] = (float(observed[i]), float(low[i]), float(high[i]))
    return comparison


def compare(paths: list[Path], *, resamples: int = 1000, seed: int = 0,
            defaults: dict | None = None) -> tuple[list[Recipe], list[Comparison], list[Run]]:
    """The recipes of the finished runs under `paths`, best first; the best one against each
    other; the runs left out because they did not train to their end (still running, stopped by
    a kill, or by a pruner: their `stopped` says why). `defaults` (train.config.option_defaults:
    this module sits below training) fills the options an older run's config.json lacks, so an
    older and a newer run of one recipe are one recipe."""
    runs = [read_run(path, with_predictions=False, defaults=defaults) for path in find_runs(paths)]
    unfinished = [run for run in runs if not run.finished]
    runs = [run for run in runs if run.finished]
    if not runs:
        raise UserError(f"{unfinished[0].path}: no run under {', '.join(map(str, paths))} trained to its end "
                        f"(metrics.jsonl ends before its last epoch or max-steps); let them finish, or resume them with "
                        f"`mtcli train --resume`")
    _one_run_per_seed(runs)
    recipes = group(runs)
    if len(recipes) < 2:
        return recipes, [], unfinished
    for recipe in recipes:
        for run in recipe.runs:
            run.predictions = read_dev_predictions(run.path / PREDICTIONS)
            _agrees_with_predictions(run)
    comparisons = [paired_bootstrap(recipes[0], other, resamples, seed) for other in recipes[1:]]
    for comparison, adjusted in zip(comparisons, holm([c.p for c in comparisons])):
        comparison.p_holm = adjusted
    return recipes, comparisons, unfinished


def _agrees_with_predictions(run: Run, tolerance: float = 1e-4) -> None:
    """eval.json's headline scores, the numbers the table shows, must be what the run's dev
    predictions give, the numbers the bootstrap resamples; else one of the files was edited."""
    kept = run.predictions
    for task, predictions in kept.predictions.items():
        if not np.all(np.isfinite(predictions)):
            raise UserError(f"{run.path / PREDICTIONS}: {task}'s predictions hold a value that is not a finite number; "
                            f"the run folder is damaged or not mtcli's")
        declared = kept.tasks[task]
        value = metric_value(declared, declared.metric, predictions, kept.labels[task])
        said = run.scores.get(task)
        if (value is None) != (said is None) or (value is not None and abs(value - said) > tolerance):
            raise UserError(f"{run.path / EVAL}: says {task} {declared.metric} {said}, but the run's dev "
                            f"predictions give {value}: one of the two was edited or damaged; train the run again")


def _one_run_per_seed(runs: list[Run]) -> None:
    """A seed counted twice would narrow a recipe's interval with a copy: refuse it."""
    seen: dict[tuple[str, int], Path] = {}
    for run in runs:
        other = seen.setdefault((run.recipe, run.seed), run.path)
        if other != run.path:
            raise UserError(f"{run.path}: the same recipe and seed ({run.seed}) as {other}; a seed counts once: "
                            f"pass only one of the two folders")
