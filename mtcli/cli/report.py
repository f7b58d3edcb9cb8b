"""`mtcli report`: gradient-conflict statistics and curves of a training run."""

from pathlib import Path

import typer

EPILOG = """Examples:

  mtcli report runs/demo

  mtcli train --combine upgrad --name probe && mtcli report runs/probe
"""


def report(run_dir: Path = typer.Argument(..., help="A run folder written by `mtcli train`")):
    """Per task pair: mean gradient cosine and fraction of conflicting steps; per task: its gradient's weight over
    the run. Writes conflicts.png, weights.png, report.json."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from mtcli.eval.report import report_run

    import sys

    result = report_run(run_dir, warn=lambda line: print(f"mtcli: warning: {line}", file=sys.stderr))
    console = Console()
    if not result["pairs"]:
        console.print("no task-gradient statistics in this run (the encoder never trained, or one task per step)")
    else:
        table = Table(title=f"task-gradient conflicts: {run_dir}", title_justify="left")
        for column in ("pair", "steps", "mean cosine", "std", "conflicting steps"):
            table.add_column(column, justify="left" if column == "pair" else "right")
        for pair, s in result["pairs"].items():
            table.add_row(pair, str(s["steps"]), f"{s['mean_cosine']:+.4f}", f"{s['std_cosine']:.4f}",
                          f"{s['conflict_fraction']:.1%}")
        console.print(table)
    if result["weights"]:
        weights = Table(title="weight of each task's gradient", title_justify="left")
        for column in ("task", "steps", "mean", "min", "max"):
            weights.add_column(column, justify="left" if column == "task" else "right")
        for task, w in result["weights"].items():
            weights.add_row(task, str(w["steps"]), f"{w['mean']:.4g}", f"{w['min']:.4g}", f"{w['max']:.4g}")
        console.print(weights)
    if result["epochs"]:
        epochs = Table(title="dev per epoch", title_justify="left")
        columns = [*result["tasks"], "overall"]
        for column in ("epoch", "step", *columns):
            epochs.add_column(column, justify="right")
        for e in result["epochs"]:
            epochs.add_row(str(e["epoch"]), str(e["step"]), *(f"{e.get(k) or 0:.4f}" for k in columns))
        console.print(epochs)
    if result["stopped"]:
        stop = result["stopped"]   # the reason is the log's text, not rich markup
        console.print(f"stopped at step {stop['step']}: {escape(stop['reason'])}", highlight=False)
    plots = [name for name, made in (("conflicts.png", result["pairs"]), ("weights.png", result["weights"])) if made]
    console.print(f"wrote {run_dir}/report.json" + "".join(f", {p}" for p in plots))
