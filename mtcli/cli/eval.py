"""`mtcli eval`: dev metrics (or test prediction files) of a checkpoint."""

from pathlib import Path

import typer

from mtcli.inference.scorer import BATCH_SIZE

EPILOG = """Examples:

  mtcli eval                                     # best checkpoint of the latest run, dev split

  mtcli eval --split dev --checkpoint runs/demo/best

  mtcli eval --split test --checkpoint runs/demo/best   # writes {sst,para,sts}-test-output.csv

  mtcli eval --onnx export/                      # the same metrics through onnxruntime (no torch)

  mtcli eval --onnx export/ --tasks sick.toml    # declared tasks: where their data lies

Checkpoints and exports name their data files by name only. The data is read from
--data-dir (by name), --tasks (the files that task file declares), the bundled data/
for the built-in tasks, or, for a checkpoint inside a run folder, the files that run
read if they are unchanged.
"""


def eval_command(
    split: str = typer.Option("dev", help="dev (metrics) | test (CS224N prediction files)"),
    checkpoint: Path = typer.Option(None, help="Checkpoint folder (default: runs/<latest>/best)"),
    onnx: Path = typer.Option(None, help="Evaluate an `mtcli export` folder through onnxruntime instead"),
    int8: bool = typer.Option(False, "--int8", help="With --onnx: use the int8 graphs"),
    out: Path = typer.Option(None, help="Where eval.json / predictions go (default: the checkpoint's run folder)"),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder that holds the tasks' data files, read by name "
                                                           "(default: see below)"),
    tasks: Path = typer.Option(None, "--tasks", help="A task file declaring the checkpoint's tasks: read the data "
                                                     "files it names"),
    limit: int = typer.Option(None, help="Evaluate the first N rows of each task"),
    batch_size: int = typer.Option(BATCH_SIZE, "--batch-size"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
):
    """Evaluate a checkpoint, or an export through onnxruntime: each task's dev metrics and the overall score
    (eval.json, with plots), or test prediction files."""
    from rich.console import Console

    from mtcli.core.data import notes
    from mtcli.core.errors import UserError
    from mtcli.eval.analysis import analysis_tables, plot_names
    from mtcli.eval.evaluate import evaluate_checkpoint, evaluate_onnx, scores_table

    if onnx is not None and checkpoint is not None:
        raise UserError("pass --checkpoint or --onnx, not both")
    if tasks is not None and data_dir is not None:
        raise UserError("pass --tasks or --data-dir, not both")
    where = {"split": split, "data_dir": data_dir, "task_file": tasks, "limit": limit, "batch_size": batch_size}
    if onnx is not None:
        found = evaluate_onnx(onnx, quantized=int8, **where)
    else:
        found = evaluate_checkpoint(checkpoint, device=device, **where)
    console = Console(stderr=True)
    for note in notes(found.splits):
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    out_dir = out or (found.source if onnx is not None else found.source.parent)
    written = found.save(out_dir)
    if found.unlabeled and split == "test":
        console.print(f"no labels in the test file of {', '.join(found.unlabeled)}: predictions only, no metrics")
    if found.results is not None:
        tasks_scored = found.tasks()
        table = Console()
        table.print(scores_table(found.results, tasks_scored, title=f"{split}: {found.source} "
                                                                    f"({found.backend['backend']})"))
        for analysis in analysis_tables(found.analysis, tasks_scored):
            table.print(analysis)
    plots = [name for task in found.tasks().values() for name in plot_names(task)] if split == "dev" else []
    for path in written:
        shown = f" (with {', '.join(plots)})" if plots and path.name.startswith("eval") else ""
        console.print(f"wrote {path}{shown}")

