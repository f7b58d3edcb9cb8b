"""`mtcli eval`: dev metrics (or test prediction files) of a checkpoint."""

from pathlib import Path

import typer

EPILOG = """Examples:

  mtcli eval                                     # best checkpoint of the latest run, dev split

  mtcli eval --split dev --checkpoint runs/demo/best

  mtcli eval --split test --checkpoint runs/demo/best   # writes {sst,para,sts}-test-output.csv
"""


def eval_command(
    split: str = typer.Option("dev", help="dev (metrics) | test (CS224N prediction files)"),
    checkpoint: Path = typer.Option(None, help="Checkpoint folder (default: runs/<latest>/best)"),
    out: Path = typer.Option(None, help="Where eval.json / predictions go (default: the checkpoint's run folder)"),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder with the CS224N files (default: bundled data/)"),
    limit: int = typer.Option(None, help="Evaluate the first N rows of each task"),
    batch_size: int = typer.Option(64, "--batch-size"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
):
    """Evaluate a checkpoint: SST and paraphrase accuracy, STS Pearson/Spearman, overall."""
    from rich.console import Console

    from mtcli.checkpoint import checkpoint_hash, latest_checkpoint, load_checkpoint
    from mtcli.data import read_split
    from mtcli.errors import UserError
    from mtcli.evaluate import score_predictions, scores_table, write_eval, write_test_predictions
    from mtcli.predict import predict_texts
    from mtcli.tasks import TASKS
    from mtcli.train.loop import resolve_device

    if split not in ("dev", "test"):
        raise UserError(f"--split {split!r} is not one of dev, test")
    console = Console(stderr=True)
    ckpt = checkpoint or latest_checkpoint()
    target = resolve_device(device)
    model, tokenizer, _ = load_checkpoint(ckpt, device=target)
    out_dir = out or ckpt.parent
    splits = {t: read_split(t, split, data_dir, limit=limit) for t in TASKS}
    predictions = {}
    for task, data in splits.items():
        predictions[task], _ = predict_texts(model, tokenizer, task, [ex.texts for ex in data.examples],
                                             batch_size=batch_size, device=target)
    if split == "test":
        for path in write_test_predictions(splits, predictions, out_dir):
            console.print(f"wrote {path}")
        return
    results = score_predictions(splits, predictions)
    Console().print(scores_table(results, title=f"{split}: {ckpt}"))
    path = write_eval(results, splits, predictions, out_dir, split=split, checkpoint=str(ckpt),
                      checkpoint_sha256=checkpoint_hash(ckpt), backend="torch")
    console.print(f"wrote {path}")
