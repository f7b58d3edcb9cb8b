"""Reading a declared task's files: TSV or CSV with a header row.

Columns are found by header name (the task's `id`, `text` and `label` columns), so
CS224N's odd test-student headers (`0, "", id, sentence`) read the same as the
others. Every bad row is reported with its file and line number. Torch-free.
"""

import errno
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from mtcli.core.errors import DataError, UserError
from mtcli.core.tasks import REQUIRED_SPLITS, SPLITS, Task, rebase
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
    if not path.is_absolute():  # an artifact's bare file name that no one located (locate_data): never read from the cwd
        raise UserError(f"task {task.name!r}: its {split} file {str(path)!r} is named without a folder; pass --data-dir "
                        f"with the folder that holds it, or --tasks with the task file")
    if not path.is_file():
        problem = path_problem(path)
        fix = "fix the path in the task file, or pass --data-dir with the folder that holds it" \
            if problem == "not found" else "name a data file (TSV or CSV with a header)"
        raise UserError(f"{path}: {problem}; it is the {split} file of task {task.name!r}: {fix}")
    return path


def path_problem(path: Path) -> str:
    """Why `path` is not a readable regular file, in a few words."""
    try:
        mode = path.stat().st_mode
    except RuntimeError:
        return "is a symlink loop"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symlink loop"
        return "not found" if e.errno == errno.ENOENT else (e.strerror or "cannot be read").lower()
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    return "is not a regular file"


def locate_data(tasks: dict[str, Task], source: str | Path, *, task_file: str | Path | None = None,
                data_dir: str | Path | None = None, record: dict | None = None, splits=SPLITS) -> dict[str, Task]:
    """Where the data of a checkpoint's or an export's tasks lies. Artifacts name their data
    files by name only (a copied or hostile artifact never points mtcli at a path), so the
    reader says where, in this order:

      --data-dir DIR    each file by its name in DIR
      --tasks FILE      the files a task file declares for tasks of the same name and shape
      built-in tasks    the bundled data/ folder (the artifact's tasks are CS224N's three, or some of them)
      a run's record    for a checkpoint inside a run folder: the files that run read, if unchanged
                        (mtcli.core.provenance; `splits` are the ones the caller reads)
    and otherwise it is one error saying which to pass."""
    from mtcli.core.provenance import recorded_files
    from mtcli.core.tasks import load_task_file

    if data_dir is not None:
        return rebase(tasks, resolve_data_dir(data_dir))
    if task_file is not None:
        declared = load_task_file(task_file)
        located = {}
        for name, task in tasks.items():
            if name not in declared:
                raise UserError(f"{task_file}: declares no task {name!r}, which {source} has; pass the task file "
                                f"it was trained with, or --data-dir")
            if shape(declared[name]) != shape(task):
                raise UserError(f"{task_file}: task {name!r} is declared otherwise than in {source} (kind, columns, "
                                f"labels or range differ); pass the task file it was trained with")
            located[name] = replace(task, files=declared[name].files)
        return located
    builtin = load_task_file()
    if all(name in builtin and builtin[name].declaration() == _without_encoding(task, builtin[name])
           for name, task in tasks.items()):
        return {name: replace(task, files=builtin[name].files) for name, task in tasks.items()}
    if record is not None:
        located = {}
        for name, task in tasks.items():
            files = recorded_files(record, name, splits)
            if files is None:
                break
            located[name] = replace(task, files=files)
        else:
            return located
    first = next(iter(tasks.values()))
    shown = next(iter(first.files.values()), "")
    raise UserError(f"{source}: names its data files by name only (task {first.name!r}: {shown!r}); pass --data-dir "
                    f"with the folder that holds them, or --tasks with the task file")


def shape(task: Task) -> tuple:
    """What must agree between an artifact's task and a task file's to read its data for it."""
    return task.kind, task.text, task.label, task.labels, task.range


def _without_encoding(task: Task, builtin: Task) -> dict:
    """`task`'s declaration with the built-in's encoding (--encoding overrides it in training)."""
    return replace(task, encoding=builtin.encoding).declaration()


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
        raise DataError(path, line, f"expected {width} columns, found {len(fields)}")
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
            located = path is not None and path.is_absolute() and path.is_file()  # a bare name is not located
            counts[name][split] = len(read_split(task, split)) if located else None
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
