"""`mtcli score`: predictions for a TSV file through onnxruntime. Imports no torch."""

from pathlib import Path

import typer

EPILOG = """Examples:

  mtcli score sts pairs.tsv -o scores.tsv

  mtcli score sst reviews.tsv --on-error skip > labels.tsv

  cat pairs.tsv | mtcli score para - -o - --providers cpu

Input: TSV with or without a header. With a header, columns are found by name
(id, sentence or sentence1 and sentence2); without one, rows are `sentence` or
`id, sentence` (pairs: `sentence1, sentence2` or `id, sentence1, sentence2`).
Output: id, label and probabilities (sst, para) or id and score (sts), in input order.
"""


def score(
    task: str = typer.Argument(..., help="sst | para | sts"),
    file: str = typer.Argument(..., help="Input TSV, or - for stdin"),
    output: str = typer.Option("-", "-o", "--output", help="Output TSV, or - for stdout"),
    model: Path = typer.Option(Path("export"), help="Folder written by `mtcli export`"),
    batch_size: int = typer.Option(64, "--batch-size"),
    providers: str = typer.Option("cuda,cpu", help="onnxruntime providers in order of preference"),
    on_error: str = typer.Option("fail", "--on-error", help="fail: stop at the first bad row (exit 2); skip: count them"),
    int8: bool = typer.Option(False, "--int8", help="Use the int8 graphs (export --quantize int8)"),
):
    """Score a TSV of sentences (sst) or sentence pairs (para, sts) with the exported model."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from mtcli.inference.score import score_file

    console = Console(stderr=True)
    columns = [TextColumn(f"scoring {task}"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[rows]} rows"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        handle = bar.add_task("score", total=None, rows=0)

        def advance(rows: int, read: int, total: int | None):
            bar.update(handle, completed=read, total=total, rows=rows)

        stats = score_file(task, file, output, model_dir=model, batch_size=batch_size,
                           providers=[p.strip() for p in providers.split(",") if p.strip()], on_error=on_error,
                           progress=advance, quantized=int8)
    rate = stats.rows / stats.seconds if stats.seconds else 0.0
    console.print(f"scored {stats.rows} rows in {stats.seconds:.1f}s ({rate:.0f} rows/s)"
                  + (f" -> {output}" if output != "-" else ""))
    if stats.skipped:
        console.print(f"skipped {len(stats.skipped)} bad rows (first: {stats.skipped[0]})")
