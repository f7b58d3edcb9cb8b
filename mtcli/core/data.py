"""Reading a declared task's files: TSV or CSV with a header row.

Columns are found by header name (the task's `id`, `text` and `label` columns), so
CS224N's odd test-student headers (`0, "", id, sentence`) read the same as the
others. Every bad row is reported with its file and line number. Torch-free.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mtcli.core.errors import DataError, UserError
from mtcli.core.tasks import REQUIRED_SPLITS, SPLITS, Task
from mtcli.core.tsv import iter_rows, open_binary, sniff_delimiter

OnError = Literal["fail", "skip"]


@dataclass(frozen=True)
class Example:
    id: str
    texts: tuple[str, ...]          # (sentence,) or (sentence1, sentence2)
    label: int | float | None       # None in test-student files
    line: int                       # line number in the source file


@dataclass
class Split:
    task: Task
    split: str
    path: Path
    examples: list[Example]
    skipped: list[DataError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def labels(self) -> list[int | float]:
        return [ex.label for ex in self.examples]


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """--data-dir, checked: the folder task files are read from instead of their declared one."""
    if data_dir is None:
        return None
    path = Path(data_dir)
    if not path.is_dir():
        raise UserError(f"{path}: data folder not found; pass --data-dir with the task files (e.g. the CS224N files)")
    return path


def split_path(task: Task, split: str) -> Path:
    path = task.file(split)
    if path is None:
        raise UserError(f"task {task.name!r} declares no {split} file; add `{split} = \"FILE\"` to its [[task]] table")
    if not path.is_file():
        raise UserError(f"{path}: not found; it is the {split} file of task {task.name!r}: fix the path in the task "
                        f"file, or pass --data-dir with the folder that holds it")
    return path


def _column_index(header: list[str], path: Path, name: str) -> int:
    names = [h.strip() for h in header]
    if name not in names:
        raise DataError(path, 1, f"header has no column {name!r} (found: {', '.join(repr(n) for n in names)})")
    return names.index(name)


def parse_rows(task: Task, path: Path, rows: Iterable[tuple[int, list[str]]], *, labeled: bool | None,
               on_error: OnError = "fail", limit: int | None = None) -> tuple[list[Example], list[DataError]]:
    """Validate (line, fields) rows of one task file into Examples. `labeled=None`: labels are
    read if the header has the label column (a test file may carry them or not)."""
    rows = iter(rows)
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(path, None, "file is empty; expected a header row and data rows") from None
    names = [h.strip() for h in header]
    id_col = names.index(task.id) if task.id in names else None  # no id column: rows are named by line
    text_cols = [_column_index(header, path, c) for c in task.text]
    if labeled is None:
        labeled = task.label in names
    label_col = _column_index(header, path, task.label) if labeled else None

    examples: list[Example] = []
    skipped: list[DataError] = []
    for line, fields in rows:
        if limit is not None and len(examples) >= limit:
            break
        try:
            examples.append(_parse_row(task, path, line, fields, len(header), id_col, text_cols, label_col))
        except DataError as e:
            if on_error == "fail":
                raise
            skipped.append(e)
    return examples, skipped


def _parse_row(task, path, line, fields, width, id_col, text_cols, label_col) -> Example:
    if len(fields) != width:
        raise DataError(path, line, f"expected {width} tab-separated columns, found {len(fields)}")
    texts = tuple(fields[c].strip() for c in text_cols)
    for column, text in zip(task.text, texts):
        if not text:
            raise DataError(path, line, f"empty {column}")
    label = None
    if label_col is not None:
        try:
            label = task.parse_label(fields[label_col].strip())
        except ValueError as e:
            raise DataError(path, line, str(e)) from None
    row_id = fields[id_col].strip() if id_col is not None else str(line)
    return Example(id=row_id, texts=texts, label=label, line=line)


def read_split(task: Task, split: str, *, limit: int | None = None, on_error: OnError = "fail") -> Split:
    """Read one split of one task (TSV or CSV with a header). `limit` keeps the first N valid rows."""
    path = split_path(task, split)
    with open_binary(path) as stream:
        examples, skipped = parse_rows(task, path, iter_rows(stream, str(path), delimiter=sniff_delimiter(path)),
                                       labeled=True if split != "test" else None, on_error=on_error, limit=limit)
    if not examples:
        raise DataError(path, None, "no valid data rows")
    return Split(task, split, path, examples, skipped)


def read_splits(tasks: dict[str, Task], split: str, *, limit: int | None = None) -> dict[str, Split]:
    """One split of every task that has that split's file (every task for train and dev)."""
    return {name: read_split(task, split, limit=limit) for name, task in tasks.items()
            if split in REQUIRED_SPLITS or task.file(split) is not None}


def row_counts(tasks: dict[str, Task]) -> dict[str, dict[str, int | None]]:
    """Rows per task and split (None where the task has no such file, or it is missing)."""
    counts: dict[str, dict[str, int | None]] = {}
    for name, task in tasks.items():
        counts[name] = {}
        for split in SPLITS:
            path = task.file(split)
            counts[name][split] = len(read_split(task, split)) if path is not None and path.is_file() else None
    return counts


def subsample(split: Split, fraction: float, seed: int) -> Split:
    """A seeded random `fraction` of a split's rows, in file order: tasks keep their
    relative sizes (unlike --limit), which is what sampler comparisons need."""
    if fraction >= 1.0:
        return split
    import zlib

    import numpy as np

    keep = max(1, round(fraction * len(split)))
    rng = np.random.default_rng([seed, zlib.crc32(split.task.name.encode())])  # its own stream per task
    rows = np.sort(rng.permutation(len(split))[:keep])
    return Split(split.task, split.split, split.path, [split.examples[i] for i in rows], split.skipped)
