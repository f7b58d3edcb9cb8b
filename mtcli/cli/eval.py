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
    """Evaluate a checkpoint: SST and paraphrase accuracy, STS Pearson/Spearman, overall."""
    from rich.console import Console

    from mtcli.core.errors import UserError

    if split not in ("dev", "test"):
        raise UserError(f"--split {split!r} is not one of dev, test")
    if onnx is not None and checkpoint is not None:
        raise UserError("pass --checkpoint or --onnx, not both")
    if tasks is not None and data_dir is not None:
        raise UserError("pass --tasks or --data-dir, not both")
    console = Console(stderr=True)
    if onnx is not None:
        from mtcli.inference.score import evaluate_onnx

        results, splits, predictions = evaluate_onnx(onnx, split=split, data_dir=data_dir, task_file=tasks, limit=limit,
                                                     quantized=int8, batch_size=batch_size, return_predictions=True)
        source, out_dir, provenance = onnx, out or onnx, {"backend": "onnxruntime" + (" int8" if int8 else "")}
    else:
        results, splits, predictions, source, provenance = _torch_eval(checkpoint, split, data_dir, tasks, limit,
                                                                       batch_size, device)
        out_dir = out or source.parent
    from mtcli.core.data import notes

    for note in notes(splits):
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    _report(console, results, splits, predictions, split, source, out_dir, provenance)


def _torch_eval(checkpoint, split, data_dir, task_file, limit, batch_size, device):
    from mtcli.core.data import read_splits
    from mtcli.eval.evaluate import score_predictions
    from mtcli.model.checkpoint import checkpoint_data, checkpoint_hash, latest_checkpoint, load_checkpoint
    from mtcli.model.predict import predict_texts, resolve_device

    ckpt = checkpoint or latest_checkpoint()
    target = resolve_device(device)
    model, tokenizer, _ = load_checkpoint(ckpt, device=target)
    located = checkpoint_data(ckpt, model.tasks, task_file=task_file, data_dir=data_dir, splits=(split,))
    splits = read_splits(located, split, limit=limit)
    predictions = {}
    for task, data in splits.items():
        predictions[task], _ = predict_texts(model, tokenizer, task, [ex.texts for ex in data.examples],
                                             batch_size=batch_size, device=target)
    results = score_predictions(splits, predictions) if split == "dev" else None
    return results, splits, predictions, ckpt, {"backend": "torch", "checkpoint_sha256": checkpoint_hash(ckpt)}


def _report(console, results, splits, predictions, split, source, out_dir, provenance):
    """Print and save what an evaluation found: for dev the metrics (eval.json, plots); for test
    the prediction files, and the metrics of the tasks whose test file has labels
    (eval-test.json), saying which have none."""
    from rich.console import Console

    from mtcli.eval.analysis import analysis_tables, plot_names
    from mtcli.eval.evaluate import labeled, score_predictions, scores_table, write_eval, write_test_predictions

    if split == "test":
        for path in write_test_predictions(splits, predictions, out_dir):
            console.print(f"wrote {path}")
        unlabeled = [name for name, data in splits.items() if all(ex.label is None for ex in data.examples)]
        if unlabeled:
            console.print(f"no labels in the test file of {', '.join(unlabeled)}: predictions only, no metrics")
        splits, predictions = labeled(splits, predictions)
        if not splits:
            return
        results = score_predictions(splits, predictions)
    tasks = {name: data.task for name, data in splits.items()}
    out = Console()
    out.print(scores_table(results, tasks, title=f"{split}: {source} ({provenance['backend']})"))
    path, analysis = write_eval(results, splits, predictions, out_dir, split=split, source=str(source), **provenance)
    for table in analysis_tables(analysis, tasks):
        out.print(table)
    plots = [name for task in tasks.values() for name in plot_names(task)] if split == "dev" else []
    console.print(f"wrote {path}" + (f" (with {', '.join(plots)})" if plots else ""))
