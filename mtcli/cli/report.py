"""`mtcli report`: gradient-conflict statistics and curves of a training run."""

from pathlib import Path

import typer

EPILOG = """Examples:

  mtcli report runs/demo

  mtcli train --combine sum --grad-stats --name probe && mtcli report runs/probe
"""


def report(run_dir: Path = typer.Argument(..., help="A run folder written by `mtcli train`")):
    """Per task pair: mean gradient cosine and fraction of conflicting steps; writes conflicts.png, report.json."""
    from rich.console import Console
    from rich.table import Table

    from mtcli.eval.report import report_run

    result = report_run(run_dir)
    console = Console()
    if not result["pairs"]:
        console.print("no task-gradient statistics in this run: train with --combine pcgrad or --grad-stats")
    else:
        table = Table(title=f"task-gradient conflicts: {run_dir}", title_justify="left")
        for column in ("pair", "steps", "mean cosine", "std", "conflicting steps"):
            table.add_column(column, justify="left" if column == "pair" else "right")
        for pair, s in result["pairs"].items():
            table.add_row(pair, str(s["steps"]), f"{s['mean_cosine']:+.4f}", f"{s['std_cosine']:.4f}",
                          f"{s['conflict_fraction']:.1%}")
        console.print(table)
        if result["pcgrad_mean_weight"]:
            console.print("mean PCGrad weight per task: " + ", ".join(
                f"{t} {w:.3f}" for t, w in result["pcgrad_mean_weight"].items()))
    if result["epochs"]:
        epochs = Table(title="dev per epoch", title_justify="left")
        columns = [*result["tasks"], "overall"]
        for column in ("epoch", "step", *columns):
            epochs.add_column(column, justify="right")
        for e in result["epochs"]:
            epochs.add_row(str(e["epoch"]), str(e["step"]), *(f"{e.get(k) or 0:.4f}" for k in columns))
        console.print(epochs)
    console.print(f"wrote {run_dir}/report.json" + (" and conflicts.png" if result["pairs"] else ""))
