"""What `mtcli compare` writes (mtcli.eval.compare computes it): compare.md, compare.csv (a row
per recipe, numbers unformatted), compare.json, and the plots: compare-overall.png (dev overall
against steps per recipe, the seeds' range as a band), compare-tasks.png (each task's score with
its interval) and, for a sweep, compare-importance.png (Optuna's parameter importances). Files
in the output folder are replaced only if an earlier `mtcli compare` wrote them. Torch-free.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtcli.core.errors import UserError, excerpt
from mtcli.core.fileio import read_json_dict
from mtcli.eval.compare import ALPHA, LEVEL, Comparison, Recipe
from mtcli.run.journal import FILE as JOURNAL, load_study

FORMAT = "mtcli-compare/1"
OUTPUTS = ("compare.json", "compare.md", "compare.csv", "compare-overall.png", "compare-tasks.png",
           "compare-importance.png")


def interval_text(value: tuple[float, float | None]) -> str:
    """mean ± half-width (the mean alone for one seed)."""
    mean, half = value
    return f"{mean:.4f}" if half is None else f"{mean:.4f} ± {half:.4f}"


def task_names(recipes: list[Recipe]) -> list[str]:
    """Every task of the recipes, in the order they first appear."""
    return list(dict.fromkeys(t for r in recipes for t in r.tasks))


def display_table(recipes: list[Recipe], comparisons: list[Comparison]) -> tuple[list[str], list[list[str]]]:
    """The columns and formatted rows shown to a person (the terminal's table and compare.md)."""
    tasks = task_names(recipes)
    header = ["recipe", "seeds", *tasks, "overall", "vs best: difference [95% bootstrap]", "p", "p (Holm)"]
    against = {id(c.other): c for c in comparisons}
    rows = []
    for recipe in recipes:
        c = against.get(id(recipe))
        versus = "best" if recipe is recipes[0] else \
            "-" if c is None else f"{c.difference:+.4f} [{c.low:+.4f}, {c.high:+.4f}]"
        rows.append([recipe.label, str(len(recipe.runs)),
                     *(interval_text(recipe.tasks[t]) if t in recipe.tasks else "-" for t in tasks),
                     interval_text(recipe.overall), versus, "" if c is None else f"{c.p:.4f}",
                     "" if c is None else f"{c.p_holm:.4f}{' *' if c.significant else ''}"])
    return header, rows


def task_differences_table(recipes: list[Recipe], comparisons: list[Comparison]) -> tuple[list[str], list[list[str]]]:
    """Each task's headline, the best recipe's minus each other's: difference [95% bootstrap]."""
    tasks = task_names(recipes)

    def cell(c: Comparison, task: str) -> str:
        if task not in c.tasks:   # the task's headline is undefined on these dev examples
            return "-"
        difference, low, high = c.tasks[task]
        return f"{difference:+.4f} [{low:+.4f}, {high:+.4f}]"

    return ["best minus", *tasks], [[c.other.label, *(cell(c, t) for t in tasks)] for c in comparisons]


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(row) + " |" for row in rows)]


def markdown(recipes: list[Recipe], comparisons: list[Comparison], resamples: int) -> str:
    lines = [f"Each task's headline and the overall score: mean over seeds ± the half-width of its "
             f"{LEVEL:.0%} Student-t interval. Best recipe first.", "",
             *_markdown_table(*display_table(recipes, comparisons))]
    if comparisons:
        lines += ["", f"Paired bootstrap over the dev examples ({resamples} resamples of each task's examples, the "
                      f"same for every run); * marks a difference from the best recipe significant at "
                      f"{ALPHA:g} after Holm's correction for {len(comparisons)} comparison(s)."]
        lines += ["", f"Each task's headline, the best recipe ({recipes[0].label}) minus each other one: the "
                      f"difference of their means over seeds [{LEVEL:.0%} interval on the same resamples; "
                      f"intervals, not tests].", "",
                  *_markdown_table(*task_differences_table(recipes, comparisons))]
    return "\n".join(lines) + "\n"


def table_rows(recipes: list[Recipe], comparisons: list[Comparison]) -> list[list]:
    """One row per recipe for the CSV (numbers unformatted, empty where undefined)."""
    tasks = task_names(recipes)
    header = ["recipe", "seeds",
              *(f"{t}{s}" for t in tasks for s in ("_mean", "_ci", "_difference", "_difference_low", "_difference_high")),
              "overall_mean", "overall_ci", "difference", "difference_low", "difference_high", "p", "p_holm",
              "significant", "runs"]
    rows = [header]
    against = {id(c.other): c for c in comparisons}
    for recipe in recipes:
        c = against.get(id(recipe))
        cells = [recipe.label, len(recipe.runs)]
        for t in tasks:
            mean, half = recipe.tasks.get(t, (None, None))
            cells += [mean if mean is not None else "", half if half is not None else ""]
            cells += list(c.tasks[t]) if c is not None and t in c.tasks else ["", "", ""]
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
                    "versus_best": None if c is None else {
                        "difference": c.difference, "low": c.low, "high": c.high, "p": c.p, "p_holm": c.p_holm,
                        "significant": c.significant,
                        "tasks": {t: {"difference": d, "low": low, "high": high} for t, (d, low, high) in c.tasks.items()}}})
    return {"format": FORMAT, "level": LEVEL, "resamples": resamples, "seed": seed, "recipes": out}


def _wrapped(label: str) -> str:
    """A recipe's label in lines of at most 50 characters, broken after its options' commas (a
    sweep's recipes differ in a dozen options: one line would be wider than the figure)."""
    return textwrap.fill(label, width=50, break_long_words=False, break_on_hyphens=False)


def plot(recipes: list[Recipe], out_dir: Path) -> list[Path]:
    """compare-overall.png: dev overall against steps per recipe (mean over seeds, band min..max);
    compare-tasks.png: each task's headline per recipe, a dot and its interval, one panel a task,
    the best recipe on top (the axes span the values, not zero to one: the differences are small)."""
    from mtcli.eval.plots import _pyplot, _save

    plt = _pyplot()
    colors = plt.get_cmap("tab20" if len(recipes) > 10 else "tab10").colors
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, recipe in enumerate(recipes):
        steps = sorted({s for r in recipe.runs for s, _ in r.curve})
        table = [[dict(r.curve).get(s, np.nan) for s in steps] for r in recipe.runs]
        if not steps:
            continue
        values = np.array(table, dtype=np.float64)
        color = colors[i % len(colors)]
        ax.plot(steps, np.nanmean(values, axis=0), "o-", color=color,
                label=_wrapped(f"{recipe.label} ({len(recipe.runs)} seeds)"))
        if len(recipe.runs) > 1:
            ax.fill_between(steps, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=color, alpha=0.15)
    ax.set_xlabel("step")
    ax.set_ylabel("dev overall")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    paths = [_save(fig, out_dir / "compare-overall.png")]

    tasks = task_names(recipes)
    panels = [(t, [r.tasks.get(t, (np.nan, None)) for r in recipes]) for t in tasks] + \
             [("overall", [r.overall for r in recipes])]
    labels = [_wrapped(recipe.label) for recipe in recipes]
    row_height = 0.14 * max(2, *(label.count("\n") + 1 for label in labels))
    fig, axes = plt.subplots(1, len(panels), sharey=True, squeeze=False,
                             figsize=(2.6 * len(panels) + 3.5, row_height * len(recipes) + 1.4))
    rows = np.arange(len(recipes))[::-1]   # the first (best) recipe on top
    for ax, (title, values) in zip(axes[0], panels):
        means = np.array([m for m, _ in values], dtype=np.float64)
        halves = np.array([0.0 if h is None else h for _, h in values], dtype=np.float64)
        ax.errorbar(means, rows, xerr=halves, fmt="o", color="tab:blue", ecolor="tab:gray", capsize=2, markersize=4)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
        ax.tick_params(axis="x", labelsize=7)
    axes[0][0].set_yticks(rows, labels, fontsize=7)
    fig.supxlabel(f"dev headline: mean over seeds, {LEVEL:.0%} interval", fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "compare-tasks.png"))
    return paths


@dataclass
class Importance:
    """Optuna's parameter importances (fANOVA) of a sweep, from its `finished` trials of `trials`
    (a pruned or failed trial does not count)."""
    values: dict[str, float]
    finished: int
    trials: int

    def basis(self) -> str:
        return f"Optuna, fANOVA over the {self.finished} finished trials of {self.trials}"


def importances(paths: list[Path]) -> Importance | None:
    """Optuna's parameter importances (fANOVA) of the first sweep folder among `paths` (one holding
    study.journal, or whose parent does: a sweep's trials/), if Optuna is installed and at least
    two of its trials finished; None otherwise. The journal is JSON lines, read as data."""
    for path in paths:
        for folder in (Path(path), Path(path).parent):
            if (folder / JOURNAL).is_file():
                try:
                    import optuna
                except ImportError:
                    return None
                try:
                    study = load_study(folder)
                    trials = study.get_trials(deepcopy=False)
                    finished = sum(1 for t in trials if t.state.name == "COMPLETE")
                    if finished < 2:
                        return None
                    values = optuna.importance.get_param_importances(study)
                    return Importance({k: float(v) for k, v in values.items()}, finished, len(trials))
                except (KeyError, ValueError, RuntimeError) as e:
                    raise UserError(f"{folder / JOURNAL}: cannot be read as a sweep's study ({excerpt(str(e), 120)}); "
                                    f"the sweep folder is damaged") from None
    return None


def plot_importances(importance: Importance, out_dir: Path) -> Path:
    from mtcli.eval.plots import _pyplot, _save

    plt = _pyplot()
    values = importance.values
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(values) + 1.5))
    names = list(values)[::-1]
    ax.barh(names, [values[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance for the objective")
    ax.set_title(importance.basis(), fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, out_dir / "compare-importance.png")


def compare_files(folder: Path) -> set[str] | None:
    """What a folder `mtcli compare` wrote holds (None: its compare.json is not compare's)."""
    return set(OUTPUTS) if (read_json_dict(folder / "compare.json") or {}).get("format") == FORMAT else None


def write_outputs(out_dir: Path, recipes: list[Recipe], comparisons: list[Comparison], resamples: int,
                  seed: int, importance: Importance | None = None) -> list[Path]:
    """compare.json, .md, .csv and the plots, as the folder `out_dir`: written aside and swapped in
    whole, so it holds one comparison or the one before it, never a mix. An existing `out_dir`
    is replaced only if it is empty or an earlier `mtcli compare` wrote it and it holds nothing
    else (no file of anyone else's, no link)."""
    from mtcli.core.fileio import atomic_path, staged_dir, write_json, write_text
    from mtcli.core.tsv import TsvWriter

    out_dir = Path(out_dir)
    with staged_dir(out_dir, compare_files, "a folder `mtcli compare` wrote") as staging:
        names = [write_text(staging / "compare.md", markdown(recipes, comparisons, resamples)).name]
        with atomic_path(staging / "compare.csv") as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
            TsvWriter(fh, delimiter=",").writerows([[str(c) for c in row] for row in table_rows(recipes, comparisons)])
        names.append("compare.csv")
        names += [path.name for path in plot(recipes, staging)]
        record = as_json(recipes, comparisons, resamples, seed)
        if importance:
            names.append(plot_importances(importance, staging).name)
            record["importance"] = importance.values
            record["importance_from"] = {"finished": importance.finished, "trials": importance.trials}
        names.append(write_json(staging / "compare.json", record).name)
    return [out_dir / name for name in names]
