"""Scoring files through the Scorer, with no torch: `mtcli score` and `mtcli eval --onnx`.

Input rows stream through in windows of the Scorer's size, and results go out in input
order, so memory stays constant in the file size. Everything about a task (inputs,
encoding, output, labels, max length) comes from the export's manifest.
"""

import itertools
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtcli.core.errors import DataError, UserError
from mtcli.core.fileio import output_stream, same_file
from mtcli.core.tasks import Task
from mtcli.core.tsv import TsvWriter, iter_rows, line_counter, open_binary
from mtcli.inference.scorer import WINDOW, Scorer


# ---------------------------------------------------------------- reading score input

@dataclass
class InputLayout:
    id_column: int | None          # None: ids are line numbers
    text_columns: list[int]
    width: int
    has_header: bool


def header_columns(task: Task) -> list[tuple[str, ...]]:
    """Column names a header may give the texts: the task's declared ones, or the generic ones."""
    generic = [("sentence1", "sentence2")] if task.is_pair else [("sentence",), ("sentence1",)]
    return [tuple(c.lower() for c in task.text), *generic]


def detect_layout(first_row: list[str], task: Task, path: str) -> InputLayout:
    """Header or not; columns by name (with a header) or by position (without)."""
    names = [f.strip().lower() for f in first_row]
    choices = header_columns(task)
    ids = [n for n in dict.fromkeys((task.id.lower(), "id")) if n in names]
    if ids or any(c in names for choice in choices for c in choice):
        wanted = next((choice for choice in choices if all(c in names for c in choice)), None)
        if wanted is None:
            raise DataError(path, 1, f"header has no {' and '.join(repr(c) for c in choices[0])} column "
                                     f"(found: {', '.join(repr(n) for n in names)})")
        return InputLayout(names.index(ids[0]) if ids else None, [names.index(w) for w in wanted], len(names), True)
    need = len(task.text)
    if len(names) == need:
        return InputLayout(None, list(range(need)), need, False)
    if len(names) == need + 1:
        return InputLayout(0, list(range(1, need + 1)), need + 1, False)
    shape = "sentence1, sentence2" if task.is_pair else "sentence"
    raise DataError(path, 1, f"{len(names)} columns; without a header {task.name} rows are `{shape}` or `id, {shape}`: "
                             f"add a header row naming the columns (id, {shape})")


@dataclass
class ScoreStats:
    rows: int = 0
    skipped: list[DataError] = field(default_factory=list)
    seconds: float = 0.0


def read_score_rows(stream, name: str, task, stats: ScoreStats, on_error: str, lines=None
                    ) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(id, texts) of every valid row; bad rows raise (fail) or are counted (skip)."""
    def bad(error: DataError):
        if on_error == "fail":
            raise error
        stats.skipped.append(error)

    rows = iter_rows(stream, name, on_bad_line=None if on_error == "fail" else bad, lines=lines)
    first = next(rows, None)
    if first is None:
        raise DataError(name, None, "file is empty; expected TSV rows (with or without a header)")
    layout = detect_layout(first[1], task, name)
    pending = [] if layout.has_header else [first]
    for line, fields in itertools.chain(pending, rows):
        if len(fields) != layout.width:
            bad(DataError(name, line, f"expected {layout.width} tab-separated columns, found {len(fields)}"))
            continue
        texts = tuple(fields[c].strip() for c in layout.text_columns)
        if not all(texts):
            bad(DataError(name, line, "empty text"))
            continue
        yield (fields[layout.id_column] if layout.id_column is not None else str(line)), texts  # ids verbatim


def output_header(task: Task) -> list[str]:
    if task.kind == "regression":
        return ["id", "score"]
    if task.kind == "binary":
        return ["id", "label", "p_" + task.labels[1].replace(" ", "_")]
    return ["id", "label", *("p_" + n.replace(" ", "_") for n in task.labels)]


def output_rows(task: Task, ids: Sequence[str], predictions: np.ndarray) -> Iterator[list[str]]:
    """The fields of each output row (written by TsvWriter, which quotes what needs it)."""
    if task.kind == "regression":
        return ([i, f"{p:.6f}"] for i, p in zip(ids, predictions))
    if task.kind == "binary":
        return ([i, str(int(p > 0.5)), f"{p:.6f}"] for i, p in zip(ids, predictions))
    return ([i, str(int(row.argmax())), *(f"{v:.6f}" for v in row)] for i, row in zip(ids, predictions))


def refuse_input_as_output(input_path: str, output_path: str | None) -> None:
    """An -o that is the input file (also through a link) would replace what is being read."""
    if output_path not in (None, "-") and input_path != "-" and same_file(input_path, output_path):
        raise UserError(f"{output_path}: is the input file; scores would replace it: pass another -o")


def score_file(task_name: str, input_path: str, output_path: str | None, *, model_dir="export", batch_size: int = 64,
               providers: Sequence[str] = ("cuda", "cpu"), on_error: str = "fail", progress=None,
               quantized: bool = False) -> ScoreStats:
    """Score a TSV (or '-' for stdin) into a TSV (or '-'/None for stdout).

    A file output is written atomically (through a symlink, to its target); a device or
    FIFO is written in place; an output that is the input itself is refused."""
    if on_error not in ("fail", "skip"):
        raise UserError(f"--on-error {on_error!r} is not one of fail, skip")
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    refuse_input_as_output(input_path, output_path)
    scorer = Scorer(model_dir, int8=quantized, providers=providers)
    task = scorer.task(task_name)
    stats = ScoreStats()
    start = time.perf_counter()
    stream = open_binary(input_path)
    total = os.fstat(stream.fileno()).st_size if input_path != "-" else None
    lines = line_counter(stream, input_path, None if on_error == "fail" else stats.skipped.append)
    try:
        with output_stream(output_path) as out:
            _score_stream(scorer, task, stream, input_path, out, stats, on_error, batch_size, progress, lines, total)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    stats.seconds = time.perf_counter() - start
    return stats


def _score_stream(scorer, task, stream, name, out, stats, on_error, batch_size, progress, lines, total):
    rows = read_score_rows(stream, name, task, stats, on_error, lines=lines)
    window: list[tuple[str, tuple[str, ...]]] = [next(rows, None)]  # the input's layout is checked before any output
    writer = TsvWriter(out)
    writer.writerow(output_header(task))
    if window[0] is None:
        return
    for item in rows:
        window.append(item)
        if len(window) >= WINDOW:
            _flush(scorer, task, window, writer, stats, batch_size, progress, lines, total)
            window = []
    if window:
        _flush(scorer, task, window, writer, stats, batch_size, progress, lines, total)


def _flush(scorer, task, window, writer, stats, batch_size, progress, lines, total):
    predictions = scorer.score_window(task.name, [texts for _, texts in window], batch_size)
    writer.writerows(output_rows(task, [i for i, _ in window], predictions))
    stats.rows += len(window)
    if progress is not None:
        progress(stats.rows, lines.bytes, total)


# ---------------------------------------------------------------- evaluation through ONNX

def evaluate_onnx(model_dir: str | Path = "export", *, split: str = "dev", data_dir=None, task_file=None,
                  limit: int | None = None, quantized: bool = False, providers: Sequence[str] = ("cuda", "cpu"),
                  batch_size: int = 64, return_predictions: bool = False, tasks: dict[str, Task] | None = None):
    """The same metrics as the torch eval, computed through onnxruntime. The data is located
    from `data_dir` or `task_file` (mtcli.core.data.locate_data), or given as located `tasks`."""
    from mtcli.core.data import locate_data, read_splits
    from mtcli.eval.evaluate import score_predictions

    scorer = Scorer(model_dir, int8=quantized, providers=providers)
    if tasks is None:
        tasks = locate_data(scorer.tasks, model_dir, task_file=task_file, data_dir=data_dir, splits=(split,))
    splits = read_splits(tasks, split, limit=limit)
    predictions = {task: scorer.score(task, [ex.texts for ex in data.examples], batch_size=batch_size)
                   for task, data in splits.items()}
    if split == "test":
        return (None, splits, predictions) if return_predictions else None
    results = score_predictions(splits, predictions)
    return (results, splits, predictions) if return_predictions else results
