"""Reading the CS224N task files: SST-5, Quora, STS-B (and CFIMDB).

Files are tab-separated with a header row whose first column is a row index.
Columns are found by header name, so the odd test-student headers
(`0, "", id, sentence`) read the same as the others. Every bad row is reported
with its file and line number. Torch-free.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mtcli.core.errors import DataError, UserError
from mtcli.core.paths import DEFAULT_DATA_DIR
from mtcli.core.tasks import DATASETS, TASKS, Task, get_task
from mtcli.core.tsv import iter_rows, open_binary

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


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    path = DEFAULT_DATA_DIR if data_dir is None else Path(data_dir)
    if not path.is_dir():
        raise UserError(f"{path}: data folder not found; pass --data-dir with the CS224N files")
    return path


def split_path(task: Task | str, split: str, data_dir: str | Path | None = None) -> Path:
    task = get_task(task) if isinstance(task, str) else task
    path = resolve_data_dir(data_dir) / task.file_name(split)
    if not path.is_file():
        raise UserError(
            f"{path}: not found; --data-dir must hold the CS224N files "
            f"({', '.join(t.file_name(split) for t in TASKS.values())})"
        )
    return path


def _column_index(header: list[str], path: Path, name: str) -> int:
    names = [h.strip() for h in header]
    if name not in names:
        raise DataError(path, 1, f"header has no column {name!r} (found: {', '.join(repr(n) for n in names)})")
    return names.index(name)


def parse_rows(task: Task, path: Path, rows: Iterable[tuple[int, list[str]]], *, labeled: bool,
               on_error: OnError = "fail", limit: int | None = None) -> tuple[list[Example], list[DataError]]:
    """Validate (line, fields) rows of one task file into Examples."""
    rows = iter(rows)
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(path, None, "file is empty; expected a header row and data rows") from None
    id_col = _column_index(header, path, "id")
    text_cols = [_column_index(header, path, c) for c in task.text_columns]
    label_col = _column_index(header, path, task.label_column) if labeled else None

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
    for column, text in zip(task.text_columns, texts):
        if not text:
            raise DataError(path, line, f"empty {column}")
    label = None
    if label_col is not None:
        try:
            label = task.parse_label(fields[label_col].strip())
        except ValueError as e:
            raise DataError(path, line, str(e)) from None
    return Example(id=fields[id_col].strip(), texts=texts, label=label, line=line)


def read_split(task: Task | str, split: str, data_dir: str | Path | None = None, *,
               limit: int | None = None, on_error: OnError = "fail") -> Split:
    """Read one split of one task. `limit` keeps the first N valid rows."""
    task = get_task(task) if isinstance(task, str) else task
    path = split_path(task, split, data_dir)
    with open_binary(path) as stream:
        examples, skipped = parse_rows(task, path, iter_rows(stream, str(path)),
                                       labeled=split != "test", on_error=on_error, limit=limit)
    if not examples:
        raise DataError(path, None, "no valid data rows")
    return Split(task, split, path, examples, skipped)


def row_counts(data_dir: str | Path | None = None) -> dict[str, dict[str, int | None]]:
    """Rows per dataset and split (None where the file is absent)."""
    root = resolve_data_dir(data_dir)
    counts: dict[str, dict[str, int | None]] = {}
    for name, task in DATASETS.items():
        counts[name] = {}
        for split in ("train", "dev", "test"):
            counts[name][split] = len(read_split(task, split, root)) if (root / task.file_name(split)).is_file() else None
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
