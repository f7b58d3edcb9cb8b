"""`mtcli compare`: recipes over seeds, with confidence intervals and corrected p-values."""

from pathlib import Path

import typer

EPILOG = """Examples:

  mtcli compare runs/                                   # every finished run under runs/, grouped by recipe

  for s in 0 1 2; do mtcli train --combine sum --seed $s --name sum-$s --train-fraction 0.2 --epochs 2; done
  for s in 0 1 2; do mtcli train --combine upgrad --seed $s --name upgrad-$s --train-fraction 0.2 --epochs 2; done
  mtcli compare runs/sum-* runs/upgrad-* --out runs/compare   # sum vs upgrad over three seeds
"""


def compare_command(
    folders: list[Path] = typer.Argument(..., help="Run folders, or folders that hold them (runs/, a sweep folder)"),
    out: Path = typer.Option(Path("compare"), help="Where compare.md, compare.csv, compare.json and the plots go"),
    resamples: int = typer.Option(1000, help="Bootstrap resamples of the dev examples per comparison"),
    seed: int = typer.Option(0, help="Seed of the bootstrap's resampling"),
):
    """Group runs by recipe (every option but the seed): each task's dev score and the overall as mean ± 95%
    interval over seeds; the best recipe against each other one by a paired bootstrap over the dev examples,
    p-values Holm-corrected."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from mtcli.core.errors import UserError
    from mtcli.eval.compare import LEVEL, compare
    from mtcli.eval.compare_report import display_table, importances, task_differences_table, write_outputs
    from mtcli.train.config import option_defaults

    if not 100 <= resamples <= 1_000_000:
        raise UserError(f"--resamples {resamples}: must be between 100 and 1000000")
    recipes, comparisons, unfinished = compare(folders, resamples=resamples, seed=seed, defaults=option_defaults())
    target = out.resolve()
    for run in [r for recipe in recipes for r in recipe.runs] + unfinished:
        if target == Path(run.path).resolve() or Path(run.path).resolve() in target.parents:
            raise UserError(f"{out}: is {'' if target == Path(run.path).resolve() else 'inside '}{run.path}, one of "
                            f"the runs compared; compare writes its own folder: pass another --out (nothing was "
                            f"changed)")
    console = Console()
    pruned = [run for run in unfinished if run.stopped]
    cut = [run for run in unfinished if not run.stopped]
    for runs, why in ((pruned, "stopped on a dev evaluation (a sweep's pruner)"),
                      (cut, "that did not train to their end (still running, killed, or stopped by Ray Tune's "
                            "scheduler)")):
        if runs:
            shown = ", ".join(f"{run.path} ({run.stopped})" if run.stopped else str(run.path) for run in runs[:5])
            shown = escape(shown)   # paths and a log's reason are data, not rich markup
            shown += f" and {len(runs) - 5} more" if len(runs) > 5 else ""
            console.print(f"[yellow]note[/] left out {len(runs)} run(s) {why}: {shown}", highlight=False)
    def table(title: str, header: list[str], rows: list[list[str]]) -> Table:
        shown = Table(title=title, title_justify="left")
        for column in header:   # the first column names the recipe; numbers to the right
            shown.add_column(column, justify="left" if column == header[0] else "right")
        for row in rows:
            shown.add_row(*row)
        return shown

    console.print(table(f"recipes, best first: mean ± {LEVEL:.0%} interval over seeds",
                        *display_table(recipes, comparisons)))
    if comparisons:
        console.print(f"* significant at 0.05 after Holm's correction for {len(comparisons)} comparison(s); "
                      f"paired bootstrap over the dev examples, {resamples} resamples")
        console.print(table(f"each task, best minus the others: difference [{LEVEL:.0%} bootstrap interval]",
                            *task_differences_table(recipes, comparisons)))
    importance = importances(folders)
    if importance:
        console.print(f"parameter importance ({importance.basis()}): "
                      + ", ".join(f"{k} {v:.2f}" for k, v in importance.values.items()))
    for path in write_outputs(out, recipes, comparisons, resamples, seed, importance):
        console.print(f"wrote {path}", highlight=False)
