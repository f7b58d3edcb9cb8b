"""`mtcli score`: predictions for a TSV file through onnxruntime. Imports no torch."""

from pathlib import Path

import typer

from mtcli.inference.scorer import BATCH_SIZE

EPILOG = """Examples:

  mtcli score sts pairs.tsv -o scores.tsv

  mtcli score sst reviews.tsv --on-error skip > labels.tsv

  cat pairs.tsv | mtcli score para - -o - --providers cpu

  mtcli score sts big.tsv -o scores.tsv --engine ray --workers 8        # Ray Data, local cluster

  mtcli score sts big.tsv -o scores.tsv --engine ray --ray-address head:6379

  mtcli score sick_r qa.tsv --columns sentence_A=question,sentence_B=answer

  printf 'A dog.\tA cat.\n' | mtcli score sts - --no-header

Input: TSV with a header row; the task's text columns are found by name (the names
its declaration gives, e.g. sentence or sentence1 and sentence2, and its id column),
or mapped with --columns TASK_COLUMN=FILE_COLUMN. Headerless input needs --no-header:
rows are then `sentence` or `id, sentence` (pairs: `sentence1, sentence2` or `id,
sentence1, sentence2`), or the 1-based positions --columns gives. A first row that
names none of the task's columns is an error, never scored as data.
Input formats: TSV/CSV (quotes as CSV quoting or as text, whichever every row fits; or
--quoting), JSON lines (.jsonl) and Parquet (.parquet), columns by name.
Output: id, label (the class name; --labels index for its index) and probabilities, or
id and score, in input order; TSV, or Parquet when -o ends in .parquet.
"""


def score(
    task: str = typer.Argument(..., help="sst | para | sts"),
    file: str = typer.Argument(..., help="Input TSV/CSV, .jsonl or .parquet, or - for TSV on stdin"),
    output: str = typer.Option("-", "-o", "--output", help="Output TSV, or - for stdout; Parquet if it ends in .parquet"),
    model: Path = typer.Option(Path("export"), help="Folder written by `mtcli export`"),
    batch_size: int = typer.Option(BATCH_SIZE, "--batch-size"),
    providers: str = typer.Option("cuda,cpu", help="onnxruntime providers in order of preference"),
    on_error: str = typer.Option("fail", "--on-error", help="fail: stop at the first bad row (exit 2); skip: count them"),
    int8: bool = typer.Option(False, "--int8", help="Use the int8 graphs (export --quantize int8)"),
    sessions: int = typer.Option(None, "--sessions", help="onnxruntime sessions scoring batches side by side "
                                 "(default: one per core, each of 1 thread; the faster on 2 cores)"),
    threads: int = typer.Option(None, "--threads", help="Threads of each session (default: the cores over --sessions)"),
    engine: str = typer.Option("local", help="local (this process) | ray (Ray Data: read, score on --workers actors)"),
    ray_address: str = typer.Option(None, "--ray-address", help="With --engine ray: a running cluster (HOST:6379); "
                                                                "default: start a local one"),
    workers: int = typer.Option(2, help="With --engine ray: scoring actors (one CPU each)"),
    no_header: bool = typer.Option(False, "--no-header", help="The input has no header row: columns by position"),
    columns: str = typer.Option(None, "--columns", help="Map the task's columns to the file's: TASK_COLUMN=FILE_COLUMN,... "
                                                        "(1-based positions with --no-header), e.g. "
                                                        "sentence1=question,sentence2=answer"),
    quoting: str = typer.Option("auto", "--quoting", help="TSV/CSV input: auto (CSV quoting if every row fits, else "
                                                         "literal if every row fits) | csv | literal"),
    labels: str = typer.Option("name", "--labels", help="The label column: name (the declared class name) | index"),
):
    """Score a TSV of sentences (sst) or sentence pairs (para, sts) with the exported model."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from mtcli.core.errors import UserError
    from mtcli.inference.score import parse_columns, score_file

    console = Console(stderr=True)
    layout = {"header": not no_header, "columns": parse_columns(columns), "quoting": quoting, "labels": labels,
              "on_note": lambda note: console.print(f"note: {note}", highlight=False, soft_wrap=True)}
    provider_list = [p.strip() for p in providers.split(",") if p.strip()]
    if engine not in ("local", "ray"):
        raise UserError(f"--engine {engine!r} is not one of local, ray")
    if engine == "ray":
        from mtcli.inference.ray_data import score_file_ray

        stats = score_file_ray(task, file, output, model_dir=model, workers=workers, address=ray_address,
                               on_error=on_error, providers=provider_list, quantized=int8, **layout)
        console.print(f"scored {stats.rows} rows on {workers} Ray workers in {stats.seconds:.1f}s"
                      + (f" -> {output}" if output != "-" else ""))
        if stats.skipped:
            console.print(f"skipped {len(stats.skipped)} bad rows (first: {stats.skipped[0]})")
        return
    columns = [TextColumn(f"scoring {task}"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[rows]} rows"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        handle = bar.add_task("score", total=None, rows=0)

        def advance(rows: int, read: int | None, total: int | None):
            bar.update(handle, completed=read if read is not None else rows, total=total, rows=rows)

        stats = score_file(task, file, output, model_dir=model, batch_size=batch_size,
                           providers=provider_list, on_error=on_error, progress=advance, quantized=int8,
                           sessions=sessions, threads=threads, **layout)
    rate = stats.rows / stats.seconds if stats.seconds else 0.0
    console.print(f"scored {stats.rows} rows in {stats.seconds:.1f}s ({rate:.0f} rows/s; onnxruntime: "
                  f"{stats.parallelism})" + (f" -> {output}" if output != "-" else ""), soft_wrap=True)
    if stats.skipped:
        console.print(f"skipped {len(stats.skipped)} bad rows (first: {stats.skipped[0]})")
