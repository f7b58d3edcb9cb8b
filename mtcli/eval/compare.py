"""`mtcli compare`: which recipes differ, honestly. Runs are grouped by recipe (every option but
the seed and where the run went); per recipe each task's headline and the overall score as the
mean over seeds with a 95% confidence interval (Student's t); the best recipe (highest mean
overall) against each other one by a paired bootstrap over the dev examples (every run keeps
its best epoch's dev predictions: mtcli.eval.predictions), p-values corrected for the number of
comparisons by Holm's step-down method.

The bootstrap resamples each task's dev examples (independently per task, the same resample for
every run: the runs are paired by example) and recomputes the difference of the recipes' mean
overall scores; its p-value is two-sided, (1 + #resamples on the far side of 0) / (1 + #resamples),
doubled. Everything is read from the named folders only (config.json, eval.json, metrics.jsonl,
dev-predictions.safetensors of each run), each value checked. Torch-free.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from mtcli.core.errors import UserError
from mtcli.core.fileio import read_json_dict
from mtcli.core.metrics import metric_value, unit_score
from mtcli.core.runlog import read_metrics
from mtcli.eval.predictions import FILE as PREDICTIONS, DevPredictions, read_dev_predictions

# Options that say how or where a run went, not what it trained: runs that differ only in them
# are seeds of one recipe
NOT_RECIPE = ("name", "out", "seed", "device", "eval_batch_size", "log_every", "progress_every", "save_every",
              "eval_every", "log_to", "skip_nonfinite", "learning_rate", "grad_stats")
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
    predictions: DevPredictions | None = None

    @property
    def recipe(self) -> str:
        return json.dumps({k: v for k, v in sorted(self.config.items()) if k not in NOT_RECIPE}, sort_keys=True)


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

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA


def find_runs(paths: list[Path]) -> list[Path]:
    """The run folders among `paths`: each a run folder, or a folder holding run folders (a runs/
    or sweep folder; two levels down at most, no symbolic links followed)."""
    found = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: not a folder; pass run folders or folders that hold them")
        if _is_run(path):
            found.append(path)
            continue
        children = [c for c in sorted(path.iterdir()) if c.is_dir() and not c.is_symlink()]
        runs = [c for c in children if _is_run(c)]
        runs += [g for c in children if not _is_run(c)
                 for g in sorted(c.iterdir()) if g.is_dir() and not g.is_symlink() and _is_run(g)]
        if not runs:
            raise UserError(f"{path}: holds no finished run (a folder with config.json and eval.json); pass run "
                            f"folders or folders that hold them")
        found += runs
    return list(dict.fromkeys(found))


def _is_run(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "eval.json").is_file()


def read_run(path: Path, with_predictions: bool) -> Run:
    config = read_json_dict(path / "config.json")
    evaluation = read_json_dict(path / "eval.json")
    if config is None or evaluation is None:
        raise UserError(f"{path}: config.json or eval.json is not a JSON object; the run folder is damaged")
    seed = config.get("seed")
    headline, overall = evaluation.get("headline"), evaluation.get("overall")
    if not isinstance(seed, int) or not _number(overall) or not isinstance(headline, dict) \
            or not all(isinstance(k, str) and (v is None or _number(v)) for k, v in headline.items()):
        raise UserError(f"{path}: eval.json or config.json lacks its seed, headline scores or overall score; the "
                        f"run folder is damaged or not mtcli's")
    curve = []
    if (path / "metrics.jsonl").is_file():
        for r in read_metrics(path / "metrics.jsonl"):
            if r.get("type") in ("epoch", "eval") and _number(r.get("overall")):   # (read_metrics checked step)
                curve.append((r["step"], float(r["overall"])))
    run = Run(path, config, seed, {k: float(v) for k, v in headline.items() if v is not None}, float(overall), curve)
    if with_predictions:
        run.predictions = read_dev_predictions(path / PREDICTIONS)
    return run


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
    for recipe, config in zip(recipes, configs):
        recipe.label = ", ".join(f"{k.replace('_', '-')}={_shown(config.get(k))}" for k in varying) or "all runs"
        recipe.overall = mean_interval([r.overall for r in recipe.runs])
        tasks = dict.fromkeys(t for r in recipe.runs for t in r.scores)
        recipe.tasks = {t: mean_interval([r.scores[t] for r in recipe.runs if t in r.scores]) for t in tasks}
    return sorted(recipes, key=lambda r: -r.overall[0])


def _shown(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "{}"
    if isinstance(value, str) and "/" in value:
        return Path(value).name
    return str(value)


def paired_bootstrap(best: Recipe, other: Recipe, resamples: int, seed: int) -> Comparison:
    """The difference of the recipes' mean overall scores over bootstrap resamples of the dev examples."""
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

    def overall(run: Run, rows: list[np.ndarray]) -> float:
        values = []
        for task, index in zip(tasks, rows):
            metrics = {declared[task].metric: metric_value(declared[task], declared[task].metric,
                                                           run.predictions.predictions[task][index],
                                                           run.predictions.labels[task][index])}
            value = unit_score(declared[task], metrics)
            if value is not None:
                values.append(value)
        return float(np.mean(values)) if values else math.nan

    def difference(*rows) -> float:
        rows = [np.asarray(r, dtype=np.int64) for r in rows]
        return float(np.mean([overall(r, rows) for r in best.runs]) - np.mean([overall(r, rows) for r in other.runs]))

    every = [np.arange(len(reference.labels[t])) for t in tasks]
    observed = difference(*every)
    result = stats.bootstrap(every, difference, n_resamples=resamples, vectorized=False, paired=False,
                             confidence_level=LEVEL, method="percentile", random_state=np.random.default_rng(seed))
    draws = result.bootstrap_distribution
    far = min(int((draws <= 0).sum()), int((draws >= 0).sum()))
    p = min(1.0, 2 * (far + 1) / (len(draws) + 1))
    return Comparison(other, observed, float(result.confidence_interval.low), float(result.confidence_interval.high), p)


def compare(paths: list[Path], *, resamples: int = 1000, seed: int = 0) -> tuple[list[Recipe], list[Comparison]]:
    """The recipes of the runs under `paths`, best first, and the best one against each other."""
    runs = [read_run(path, with_predictions=False) for path in find_runs(paths)]
    recipes = group(runs)
    if len(recipes) < 2:
        return recipes, []
    for recipe in recipes:
        for run in recipe.runs:
            run.predictions = read_dev_predictions(run.path / PREDICTIONS)
    comparisons = [paired_bootstrap(recipes[0], other, resamples, seed) for other in recipes[1:]]
    for comparison, adjusted in zip(comparisons, holm([c.p for c in comparisons])):
        comparison.p_holm = adjusted
    return recipes, comparisons


# ---------------------------------------------------------------- what compare writes

FORMAT = "mtcli-compare/1"
OUTPUTS = ("compare.json", "compare.md", "compare.csv", "compare-overall.png", "compare-tasks.png",
           "compare-importance.png")


def interval_text(value: tuple[float, float | None]) -> str:
    """mean ± half-width (the mean alone for one seed)."""
    mean, half = value
    return f"{mean:.4f}" if half is None else f"{mean:.4f} ± {half:.4f}"


def markdown(recipes: list[Recipe], comparisons: list[Comparison], resamples: int) -> str:
    tasks = list(dict.fromkeys(t for r in recipes for t in r.tasks))
    lines = [f"Each task's headline and the overall score: mean over seeds ± the half-width of its "
             f"{LEVEL:.0%} Student-t interval. Best recipe first.", "",
             "| recipe | seeds | " + " | ".join(tasks) + " | overall | vs best: difference [95% bootstrap] | p | "
             "p (Holm) |", "|---|---|" + "---|" * len(tasks) + "---|---|---|---|"]
    against = {id(c.other): c for c in comparisons}
    for recipe in recipes:
        c = against.get(id(recipe))
        versus = "best" if recipe is recipes[0] else \
            "-" if c is None else f"{c.difference:+.4f} [{c.low:+.4f}, {c.high:+.4f}]"
        p = "" if c is None else f"{c.p:.4f}"
        holm_p = "" if c is None else f"{c.p_holm:.4f}{' *' if c.significant else ''}"
        cells = " | ".join(interval_text(recipe.tasks[t]) if t in recipe.tasks else "-" for t in tasks)
        lines.append(f"| {recipe.label} | {len(recipe.runs)} | {cells} | {interval_text(recipe.overall)} | {versus} | {p} | "
                     f"{holm_p} |")
    if comparisons:
        lines += ["", f"Paired bootstrap over the dev examples ({resamples} resamples of each task's examples, the "
                      f"same for every run); * marks a difference from the best recipe significant at "
                      f"{ALPHA:g} after Holm's correction for {len(comparisons)} comparison(s)."]
    return "\n".join(lines) + "\n"


def table_rows(recipes: list[Recipe], comparisons: list[Comparison]) -> list[list]:
    """One row per recipe for the CSV (numbers unformatted, empty where undefined)."""
    tasks = list(dict.fromkeys(t for r in recipes for t in r.tasks))
    header = ["recipe", "seeds", *(f"{t}{s}" for t in tasks for s in ("_mean", "_ci")), "overall_mean", "overall_ci",
              "difference", "difference_low", "difference_high", "p", "p_holm", "significant", "runs"]
    rows = [header]
    against = {id(c.other): c for c in comparisons}
    for recipe in recipes:
        c = against.get(id(recipe))
        cells = [recipe.label, len(recipe.runs)]
        for t in tasks:
            mean, half = recipe.tasks.get(t, (None, None))
            cells += [mean if mean is not None else "", half if half is not None else ""]
        cells += [recipe.overall[0], "" if recipe.overall[1] is None else recipe.overall[1]]
        cells += ["", "", "", "", "", ""] if c is None else [c.difference, c.low, c.high, c.p, c.p_holm, c.significant]
        cells.append(" ".join(str(r.path) for r in recipe.runs))
        rows.append(cells)
    return rows


def as_json(recipes: list[Recipe], comparisons: list[Comparison], resamples: int, seed: int) -> dict:
    against = {id(c.other): c for c in comparisons}
    out = []
    for recipe in recipes:
        c = against.get(id(recipe))
        out.append({"label": recipe.label, "runs": [str(r.path) for r in recipe.runs],
                    "seeds": [r.seed for r in recipe.runs], "recipe": json.loads(recipe.runs[0].recipe),
                    "overall": {"mean": recipe.overall[0], "ci": recipe.overall[1]},
                    "tasks": {t: {"mean": m, "ci": h} for t, (m, h) in recipe.tasks.items()},
                    "versus_best": None if c is None else {"difference": c.difference, "low": c.low, "high": c.high,
                                                           "p": c.p, "p_holm": c.p_holm, "significant": c.significant}})
    return {"format": FORMAT, "level": LEVEL, "resamples": resamples, "seed": seed, "recipes": out}


def plot(recipes: list[Recipe], out_dir: Path) -> list[Path]:
    """compare-overall.png: dev overall against steps per recipe (mean over seeds, band min..max);
    compare-tasks.png: each task's headline per recipe with its interval."""
    from mtcli.eval.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for recipe in recipes:
        steps = sorted({s for r in recipe.runs for s, _ in r.curve})
        table = [[dict(r.curve).get(s, np.nan) for s in steps] for r in recipe.runs]
        if not steps:
            continue
        values = np.array(table, dtype=np.float64)
        line, = ax.plot(steps, np.nanmean(values, axis=0), "o-", label=f"{recipe.label} ({len(recipe.runs)} seeds)")
        if len(recipe.runs) > 1:
            ax.fill_between(steps, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=line.get_color(),
                            alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel("dev overall")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [_save(fig, out_dir / "compare-overall.png")]
    tasks = list(dict.fromkeys(t for r in recipes for t in r.tasks)) + ["overall"]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks) * max(1, len(recipes)) / 2), 4))
    width = 0.8 / len(recipes)
    for i, recipe in enumerate(recipes):
        values = [recipe.tasks.get(t, (np.nan, None)) if t != "overall" else recipe.overall for t in tasks]
        ax.bar(np.arange(len(tasks)) + i * width, [m for m, _ in values], width,
               yerr=[0 if h is None else h for _, h in values], capsize=3, label=recipe.label)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks)
    ax.set_ylabel(f"dev headline (mean, {LEVEL:.0%} interval)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "compare-tasks.png"))
    return paths


def importances(paths: list[Path]) -> dict[str, float] | None:
    """Optuna's parameter importances (fANOVA) of the first sweep folder among `paths` (one holding
    study.journal, or whose parent does: a sweep's trials/), if Optuna is installed and at least
    two of its trials finished; None otherwise. The journal is JSON lines, read as data."""
    for path in paths:
        for folder in (Path(path), Path(path).parent):
            if (folder / "study.journal").is_file():
                try:
                    import optuna
                    from optuna.storages import JournalStorage
                    from optuna.storages.journal import JournalFileBackend
                except ImportError:
                    return None
                optuna.logging.set_verbosity(optuna.logging.WARNING)
                try:
                    study = optuna.load_study(study_name="sweep", storage=JournalStorage(
                        JournalFileBackend(str(folder / "study.journal"))))
                    finished = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
                    if len(finished) < 2:
                        return None
                    return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
                except (KeyError, ValueError, RuntimeError) as e:
                    raise UserError(f"{folder / 'study.journal'}: cannot be read as a sweep's study ({e}); the "
                                    f"sweep folder is damaged") from None
    return None


def plot_importances(values: dict[str, float], out_dir: Path) -> Path:
    from mtcli.eval.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(values) + 1.5))
    names = list(values)[::-1]
    ax.barh(names, [values[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance for the objective (Optuna, fANOVA)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, out_dir / "compare-importance.png")


def write_outputs(out_dir: Path, recipes: list[Recipe], comparisons: list[Comparison], resamples: int,
                  seed: int, importance: dict[str, float] | None = None) -> list[Path]:
    """compare.json, .md, .csv and the plots into `out_dir`; files there are replaced only if an
    earlier `mtcli compare` wrote them (its compare.json says so)."""
    from mtcli.core.fileio import atomic_path, write_json, write_text
    from mtcli.core.tsv import TsvWriter

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder; pass another --out")
    ours = (read_json_dict(out_dir / "compare.json") or {}).get("format") == FORMAT
    taken = [name for name in OUTPUTS if (out_dir / name).exists()]
    if taken and not ours:
        raise UserError(f"{out_dir / taken[0]}: exists and mtcli compare did not write it; pass another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_text(out_dir / "compare.md", markdown(recipes, comparisons, resamples))]
    with atomic_path(out_dir / "compare.csv") as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        TsvWriter(fh, delimiter=",").writerows([[str(c) for c in row] for row in table_rows(recipes, comparisons)])
    paths.append(out_dir / "compare.csv")
    paths += plot(recipes, out_dir)
    record = as_json(recipes, comparisons, resamples, seed)
    if importance:
        paths.append(plot_importances(importance, out_dir))
        record["importance"] = importance
    paths.append(write_json(out_dir / "compare.json", record))
    return paths
