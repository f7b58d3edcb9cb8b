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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtcli.core.errors import DataError, UserError, cut, excerpt
from mtcli.core.fileio import atomic_path, is_stream, output_stream, read_head, refuse_overwrite_unless, same_file
from mtcli.core.readers import NAMED, ParquetRowWriter, file_format, open_table
from mtcli.core.tasks import Task
from mtcli.core.tsv import TsvWriter, line_counter, open_binary
from mtcli.core.version import __version__
from mtcli.inference.scorer import BATCH_SIZE, WINDOW, Scorer


# ---------------------------------------------------------------- reading score input
@dataclass
class InputLayout:
    id_column: int | None          # None: ids are line numbers
    text_columns: list[int]
    width: int
    has_header: bool


def parse_columns(text: str | None) -> dict[str, str]:
    """`--columns sentence_A=question,sentence_B=answer` -> {'sentence_A': 'question', ...}."""
    if not text:
        return {}
    columns = {}
    for part in text.split(","):
        key, sep, value = (p.strip() for p in part.partition("="))
        if not sep or not key or not value:
            raise UserError(f"--columns {excerpt(text)}: expected TASK_COLUMN=FILE_COLUMN pairs, e.g. "
                            f"sentence1=question,sentence2=answer (or 1-based positions with --no-header)")
        if key in columns:
            raise UserError(f"--columns {excerpt(text)}: {key} is mapped twice")
        columns[key] = value
    return columns


def detect_layout(first_row: list[str], task: Task, path: str, *, header: bool = True,
                  columns: dict[str, str] | None = None, unit: str = "line") -> InputLayout:
    """Where the id and text columns are. With a header (the default), columns are found by name:
    the task's declared text columns (and its id column, else rows are numbered by line), or
    the file's own names mapped with `columns` ({task column: file column}). Without one
    (`header=False`), by position: `text...` or `id, text...`, or the 1-based positions that
    `columns` gives. A first row that names none of the task's columns is never taken as
    data: it is an error saying how to map the columns, or to pass --no-header."""
    columns = dict(columns or {})
    known = [*task.text, task.id, "id"]
    unknown = [key for key in columns if key not in known]
    if unknown:
        raise UserError(f"--columns: {excerpt(unknown[0])} is not a column of task {excerpt(task.name)} "
                        f"(its columns: {', '.join(dict.fromkeys([*task.text, task.id]))})")
    id_key = next((key for key in (task.id, "id") if key in columns), None)
    if not header:
        return _positional_layout(first_row, task, path, columns, id_key)
    names = [f.strip().lower() for f in first_row]

    where = 1 if unit == "line" else None  # a named format's columns are no line of it

    def find(name: str) -> int | None:
        matches = [i for i, n in enumerate(names) if n == name.lower()]
        if len(matches) > 1:
            raise DataError(path, where, f"header names column {excerpt(name)} {len(matches)} times; name each column once")
        return matches[0] if matches else None

    wanted = {c: columns.get(c, c) for c in task.text}
    found = {c: find(name) for c, name in wanted.items()}
    missing = [c for c, i in found.items() if i is None]
    if missing:
        shown = cut(", ".join(repr(f.strip()) for f in first_row))
        example = ",".join(f"{c}=COLUMN" for c in task.text)
        if len(missing) == len(task.text) and not columns:
            raise DataError(path, where, f"the header names none of {task.name}'s text columns "
                                     f"({', '.join(task.text)}; found: {shown}): map them with --columns {example}, "
                                     f"or pass --no-header if the first row is data")
        raise DataError(path, where, f"header has no column {excerpt(wanted[missing[0]])} for {missing[0]} (found: {shown}); "
                                     f"map it with --columns {missing[0]}=COLUMN")
    if id_key is not None:
        id_column = find(columns[id_key])
        if id_column is None:
            raise DataError(path, where, f"header has no column {excerpt(columns[id_key])} for the ids (--columns {id_key}=...)")
    else:
        id_column = next((i for i in (find(task.id), find("id")) if i is not None), None)
    return InputLayout(id_column, [found[c] for c in task.text], len(first_row), True)


def _positional_layout(first_row: list[str], task: Task, path: str, columns: dict[str, str], id_key) -> InputLayout:
    width, need = len(first_row), len(task.text)
    shape = ", ".join(task.text)
    if columns:
        def position(key: str) -> int:
            value = columns[key]
            if not value.isdigit() or not 1 <= int(value) <= width:
                raise UserError(f"--columns {key}={value}: without a header, columns are 1-based positions "
                                f"(1 to {width} in {path})")
            return int(value) - 1

        missing = [c for c in task.text if c not in columns]
        if missing:
            raise UserError(f"--columns: with --no-header give every text column's position ({missing[0]} is "
                            f"missing), e.g. --columns {','.join(f'{c}={i + 2}' for i, c in enumerate(task.text))}")
        return InputLayout(position(id_key) if id_key else None, [position(c) for c in task.text], width, False)
    if width == need:
        return InputLayout(None, list(range(need)), need, False)
    if width == need + 1:
        return InputLayout(0, list(range(1, need + 1)), need + 1, False)
    raise DataError(path, 1, f"{width} columns; without a header {task.name} rows are `{shape}` or `id, {shape}`: "
                             f"give the columns' positions with --columns, e.g. "
                             f"{','.join(f'{c}={i + 2}' for i, c in enumerate(task.text))}, or add a header row")


@dataclass
class ScoreStats:
    rows: int = 0
    skipped: list[DataError] = field(default_factory=list)
    seconds: float = 0.0
    parallelism: str = ""   # how onnxruntime ran (Scorer.describe)


@dataclass(frozen=True)
class ScoreItem:
    """One row of a score input, in file order: its id and texts, or why it cannot be scored."""
    line: int
    id: str | None = None
    texts: tuple[str, ...] | None = None
    error: DataError | None = None


def score_items(stream, name: str, task: Task, *, header: bool = True, columns: dict[str, str] | None = None,
                lines=None, quoting: str = "auto", on_note=None) -> Iterator[ScoreItem]:
    """Every row of a score input in order, good or bad: the one reading of score input that
    the local and Ray engines share (same rows, same numbers, same reasons). TSV/CSV, JSON
    lines or Parquet (mtcli.core.readers). The layout (header, columns) is settled first; a
    problem there is raised at once. `on_note` hears what the reader decided (quotes read
    literally), once."""
    errors: list[DataError] = []
    kind = file_format(name)
    if kind in NAMED and not header:
        raise UserError(f"--no-header: {name} is {kind}, whose rows name their columns; map them with --columns")
    named = {c.strip().lower() for c in [*(columns or {}).values(), *task.text, task.id, "id"]}
    table = open_table(name, stream, header=header, quoting=quoting, on_bad_row=errors.append, lines=lines,
                       columns=list(dict.fromkeys([*(columns or {}).values(), *task.text])),
                       reads=lambda column: column.strip().lower() in named)
    if table.note and on_note is not None:
        on_note(table.note)
    rows = table.rows
    if table.header is None:
        first = next(rows, None)
        if errors and (first is None or errors[0].line <= first[0]):
            raise errors[0]  # the first row itself is unreadable: no layout to read the rest with
        if first is None:
            raise DataError(name, None, "file is empty; expected rows of text")
        layout = detect_layout(first[1], task, name, header=False, columns=columns)
        rows = itertools.chain([first], rows)
    else:
        layout = detect_layout(table.header, task, name, columns=columns, unit=table.row_unit)
    for line, fields in rows:
        yield from (ScoreItem(e.line, error=e) for e in errors)
        errors.clear()
        if len(fields) != layout.width:
            yield ScoreItem(line, error=table.error(line, f"expected {layout.width} columns, found {len(fields)}"))
            continue
        texts = tuple((fields[c] or "").strip() for c in layout.text_columns)
        if not all(texts):
            yield ScoreItem(line, error=table.error(line, "empty text"))
            continue
        row_id = fields[layout.id_column] if layout.id_column is not None else None
        yield ScoreItem(line, row_id if row_id is not None else str(line), texts)
    yield from (ScoreItem(e.line, error=e) for e in errors)


def read_score_rows(stream, name: str, task, stats: ScoreStats, on_error: str, lines=None, *, header: bool = True,
                    columns: dict[str, str] | None = None, quoting: str = "auto",
                    on_note=None) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(id, texts) of every valid row (ids verbatim); bad rows raise (fail) or are counted (skip)."""
    for item in score_items(stream, name, task, header=header, columns=columns, lines=lines, quoting=quoting,
                            on_note=on_note):
        if item.error is None:
            yield item.id, item.texts
        elif on_error == "fail":
            raise item.error
        else:
            stats.skipped.append(item.error)


LABEL_FORMATS = ("name", "index")   # what the label column of score output holds


def output_header(task: Task) -> list[str]:
    if task.kind == "regression":
        return ["id", "score"]
    if task.kind == "binary":
        return ["id", "label", "p_" + task.labels[1].replace(" ", "_")]
    return ["id", "label", *("p_" + n.replace(" ", "_") for n in task.labels)]


def output_rows(task: Task, ids: Sequence[str], predictions: np.ndarray, labels: str = "name") -> Iterator[list]:
    """Each output row's values: the id, the label (the class's declared name, or its index
    with labels="index") and the probabilities, or the score."""
    def label(index: int):
        return task.labels[index] if labels == "name" else index

    if task.kind == "regression":
        return ([i, float(p)] for i, p in zip(ids, predictions))
    if task.kind == "binary":
        return ([i, label(int(p > 0.5)), float(p)] for i, p in zip(ids, predictions))
    return ([i, label(int(row.argmax())), *map(float, row)] for i, row in zip(ids, predictions))


def tsv_fields(row: list) -> list[str]:
    """An output row as text: numbers with 6 decimals (labels, ints, as they are)."""
    return [f"{v:.6f}" if isinstance(v, float) else str(v) for v in row]


class ScoreWriter:
    """Where score output goes: TSV (a file, a device, stdout), or Parquet when the path ends in
    .parquet (one file, typed columns: id and label strings, numbers as doubles)."""

    def __init__(self, path: str | None, task: Task, labels: str = "name"):
        if labels not in LABEL_FORMATS:
            raise UserError(f"--labels {excerpt(labels)} is not one of {', '.join(LABEL_FORMATS)}")
        self.path, self.task, self.labels = path, task, labels
        self.header = output_header(task)
        self.parquet = path is not None and str(path).lower().endswith(".parquet")

    @contextmanager
    def open(self):
        """Yields write(ids, predictions); the output appears whole, or not at all. An existing
        file is replaced only if it is an earlier score output (mtcli never overwrites a file it
        did not write)."""
        if self.path not in (None, "-") and not is_stream(self.path):
            refuse_overwrite_unless(Path(os.path.realpath(self.path)), is_score_output)
        if self.parquet:
            label = ["string" if self.labels == "name" else "int"] if self.task.kind != "regression" else []
            types = ["string", *label] + ["double"] * (len(self.header) - 1 - len(label))
            with atomic_path(self.path, follow_link=True) as tmp, \
                    ParquetRowWriter(tmp, self.header, types, metadata={SCORE_MARK: __version__}) as out:
                yield lambda ids, predictions: out.write(output_rows(self.task, ids, predictions, self.labels))
            return
        with output_stream(self.path) as stream:
            writer = TsvWriter(stream)
            writer.writerow(self.header)
            yield lambda ids, predictions: writer.writerows(
                map(tsv_fields, output_rows(self.task, ids, predictions, self.labels)))


SCORE_MARK = "mtcli-scores"   # the key of a Parquet score output's schema metadata


def is_score_output(path: Path) -> bool:
    """Whether `path` is a file `mtcli score` wrote: TSV that starts with a score header (id,
    then score or label), or Parquet whose schema carries SCORE_MARK."""
    head = read_head(path)
    if head is None:
        return False
    if head.startswith(b"PAR1"):
        try:
            import pyarrow.parquet as pq

            return SCORE_MARK.encode() in (pq.read_schema(path).metadata or {})
        except Exception:   # no pyarrow, or not a Parquet file after all: not ours
            return False
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    return first in (b"id\tscore", b"id\tlabel") or first.startswith(b"id\tlabel\tp_")


def refuse_input_as_output(input_path: str, output_path: str | None) -> None:
    """An -o that is the input file (also through a link) would replace what is being read."""
    if output_path not in (None, "-") and input_path != "-" and same_file(input_path, output_path):
        raise UserError(f"{output_path}: is the input file; scores would replace it: pass another -o")


def score_file(task_name: str, input_path: str, output_path: str | None, *, model_dir="export", batch_size: int = BATCH_SIZE,
               providers: Sequence[str] = ("cuda", "cpu"), on_error: str = "fail", progress=None,
               quantized: bool = False, header: bool = True, columns: dict[str, str] | None = None,
               quoting: str = "auto", labels: str = "name", on_note=None, sessions: int | None = None,
               threads: int | None = None) -> ScoreStats:
    """Score a file (TSV/CSV, JSON lines or Parquet; '-' for TSV on stdin) into TSV (or
    '-'/None for stdout), or Parquet when `output_path` ends in .parquet.

    A file output is written atomically (through a symlink, to its target); a device or
    FIFO is written in place; an output that is the input itself is refused."""
    if on_error not in ("fail", "skip"):
        raise UserError(f"--on-error {excerpt(on_error)} is not one of fail, skip")
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    refuse_input_as_output(input_path, output_path)
    scorer = Scorer(model_dir, int8=quantized, providers=providers, sessions=sessions, threads=threads)
    task = scorer.task(task_name)
    output = ScoreWriter(output_path, task, labels)
    stats = ScoreStats(parallelism=scorer.describe())
    start = time.perf_counter()
    stream = open_binary(input_path) if file_format(input_path) != "parquet" else None
    total = os.fstat(stream.fileno()).st_size if stream is not None and input_path != "-" else None
    lines = line_counter(stream, input_path) if stream is not None else None
    try:
        rows = read_score_rows(stream, input_path, task, stats, on_error, lines=lines, header=header,
                               columns=columns, quoting=quoting, on_note=on_note)
        first = next(rows, None)  # the input's layout is checked before any output appears
        with output.open() as write:
            window = [] if first is None else [first]
            for item in rows:
                window.append(item)
                if len(window) >= WINDOW:
                    _flush(scorer, task, window, write, stats, batch_size, progress, lines, total)
                    window = []
            if window:
                _flush(scorer, task, window, write, stats, batch_size, progress, lines, total)
    finally:
        if stream is not None and stream is not sys.stdin.buffer:
            stream.close()
    stats.seconds = time.perf_counter() - start
    return stats


def _flush(scorer, task, window, write, stats, batch_size, progress, lines, total):
    predictions = scorer.score_window(task.name, [texts for _, texts in window], batch_size)
    write([i for i, _ in window], predictions)
    stats.rows += len(window)
    if progress is not None:
        progress(stats.rows, lines.bytes if lines is not None else None, total)
