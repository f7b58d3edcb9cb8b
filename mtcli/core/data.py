"""Reading a declared task's files (TSV or CSV with a header row, JSON lines, Parquet: see
mtcli.core.readers) into examples.

Columns are found by name (the task's `id`, `text` and `label` columns), so CS224N's odd
test-student headers (`0, "", id, sentence`) read the same as the others. Every bad row is
reported with its file and line (or row). A row with an empty label is no example of the
task (a file several tasks share may label each row for only some of them). Torch-free.
"""

import contextlib
import errno
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from mtcli.core.errors import DataError, UserError, cut, excerpt
from mtcli.core.fileio import non_regular
from mtcli.core.tasks import REQUIRED_SPLITS, SPLITS, Task, rebase
from mtcli.core.readers import Table, file_format, open_table
from mtcli.core.tsv import open_binary

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
    unlabeled: int = 0                # rows with no label for this task (a file several tasks share)
    note: str | None = None           # what the reader decided, to say once (quotes read literally)

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
        raise UserError(f"task {excerpt(task.name)} declares no {split} file; add `{split} = \"FILE\"` to its [[task]] table")
    if not path.is_absolute():  # an artifact's bare file name that no one located (locate_data): never read from the cwd
        raise UserError(f"task {excerpt(task.name)}: its {split} file {excerpt(str(path))} is named without a folder; pass --data-dir "
                        f"with the folder that holds it, or --tasks with the task file")
    if not path.is_file():
        problem = path_problem(path)
        fix = "fix the path in the task file, or pass --data-dir with the folder that holds it" \
            if problem == "not found" else "name a data file (TSV or CSV with a header)"
        raise UserError(f"{path}: {problem}; it is the {split} file of task {excerpt(task.name)}: {fix}")
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
    return non_regular(mode) or "is not a regular file"


def locate_data(tasks: dict[str, Task], source: str | Path, *, task_file: str | Path | None = None,
                data_dir: str | Path | None = None, recorded=None) -> dict[str, Task]:
    """Where the data of a checkpoint's or an export's tasks lies. Artifacts name their data
    files by name only (a copied or hostile artifact never points mtcli at a path), so the
    reader says where, in this order:

      --data-dir DIR    each file by its name in DIR
      --tasks FILE      the files a task file declares for tasks of the same name and shape
      built-in tasks    the bundled data/ folder (the artifact's tasks are CS224N's three, or some of them)
      a run's record    for a checkpoint inside a run folder: the files that run read, if unchanged;
                        `recorded(task name)` gives them (split -> path), None where the run read no
                        such task (model.checkpoint.checkpoint_data asks mtcli.run.provenance)
    and otherwise it is one error saying which to pass."""
    from mtcli.core.tasks import load_task_file

    if data_dir is not None:
        return rebase(tasks, resolve_data_dir(data_dir))
    if task_file is not None:
        declared = load_task_file(task_file)
        located = {}
        for name, task in tasks.items():
            if name not in declared:
                raise UserError(f"{task_file}: declares no task {excerpt(name)}, which {source} has; pass the task file "
                                f"it was trained with, or --data-dir")
            if shape(declared[name]) != shape(task):
                raise UserError(f"{task_file}: task {excerpt(name)} is declared otherwise than in {source} (kind, columns, "
                                f"labels or range differ); pass the task file it was trained with")
            located[name] = replace(task, files=declared[name].files)
        return located
    builtin = load_task_file()
    if all(name in builtin and shape(builtin[name]) == shape(task) and _names(builtin[name]) == _names(task)
           for name, task in tasks.items()):  # the built-in tasks (as declared now), with the artifact's encodings
        return {name: replace(builtin[name], encoding=task.encoding) for name, task in tasks.items()}
    if recorded is not None:
        located = {}
        for name, task in tasks.items():
            files = recorded(name)
            if files is None:
                break
            located[name] = replace(task, files=files)
        else:
            return located
    first = next(iter(tasks.values()))
    shown = next(iter(first.files.values()), "")
    raise UserError(f"{source}: names its data files by name only (task {excerpt(first.name)}: {excerpt(shown)}); pass --data-dir "
                    f"with the folder that holds them, or --tasks with the task file")


def shape(task: Task) -> tuple:
    """What must agree between an artifact's task and a task file's to read its data for it."""
    return task.kind, task.text, task.label, task.labels, task.range


def _names(task: Task) -> dict[str, str]:
    return {split: Path(path).name for split, path in task.files.items()}


def _column_index(header: list[str], path, name: str, unit: str = "line") -> int:
    if name not in header:
        raise DataError(path, 1 if unit == "line" else None,
                        f"header has no column {excerpt(name)} (found: {cut(', '.join(repr(n) for n in header))})")
    return header.index(name)


def parse_rows(task: Task, table: Table, *, labeled: bool | None, on_error: OnError = "fail",
               limit: int | None = None, keep_unlabeled: bool = False) -> tuple[list[Example], list[DataError], int]:
    """Validate the rows of one task file into Examples; also the bad rows (skipped) and the
    number of rows without a label for this task (partial labels: a file that several tasks
    share labels some rows for only some of them), which are left out unless `keep_unlabeled`
    (a test file: every row is predicted). `labeled=None`: labels are read if the file has the
    label column (a test file may carry them or not)."""
    header = table.header
    id_col = header.index(task.id) if task.id in header else None  # no id column: rows are named by line
    text_cols = [_column_index(header, table.path, c, table.row_unit) for c in task.text]
    if labeled is None:
        labeled = task.label in header
    label_col = _column_index(header, table.path, task.label, table.row_unit) if labeled else None

    examples: list[Example] = []
    skipped: list[DataError] = []
    unlabeled = 0
    for line, fields in table.rows:
        if limit is not None and len(examples) >= limit:
            break
        try:
            example = _parse_row(task, table, line, fields, len(header), id_col, text_cols, label_col)
        except DataError as e:
            if on_error == "fail":
                raise
            skipped.append(e)
            continue
        if label_col is not None and example.label is None:
            unlabeled += 1
            if not keep_unlabeled:
                continue
        examples.append(example)
    return examples, skipped, unlabeled


def _parse_row(task, table, line, fields, width, id_col, text_cols, label_col) -> Example:
    """The row as an Example (its label None if it has none for this task), or DataError."""
    if len(fields) != width:
        raise table.error(line, f"expected {width} columns, found {len(fields)}")
    texts = tuple((fields[c] or "").strip() for c in text_cols)
    for column, text in zip(task.text, texts):
        if not text:
            raise table.error(line, f"empty {column}")
    label = None
    if label_col is not None:
        raw = (fields[label_col] or "").strip()
        try:
            label = task.parse_label(raw) if raw else None  # none for this task (partial labels)
        except ValueError as e:
            raise table.error(line, str(e)) from None
    row_id = (fields[id_col] or "").strip() if id_col is not None else str(line)
    return Example(id=row_id or str(line), texts=texts, label=label, line=line)


def read_split(task: Task, split: str, *, limit: int | None = None, on_error: OnError = "fail") -> Split:
    """Read one split of one task (TSV, CSV, JSON lines or Parquet; mtcli.core.readers).
    `limit` keeps the first N valid rows."""
    path = split_path(task, split)
    labeled = True if split != "test" else None
    columns = [task.id, *task.text] + ([task.label] if labeled else [])
    with open_binary(path) if file_format(path) != "parquet" else contextlib.nullcontext() as stream:
        table = open_table(path, stream, quoting=task.quoting, columns=columns, reads=set(columns).__contains__)
        examples, skipped, unlabeled = parse_rows(task, table, labeled=labeled, on_error=on_error, limit=limit,
                                                  keep_unlabeled=split == "test")
    if not examples:
        raise DataError(path, None, "no valid data rows" + (f" ({unlabeled} rows have no {task.label})"
                                                             if unlabeled else ""))
    return Split(task, split, path, examples, skipped, unlabeled=unlabeled, note=table.note)


def held_out_texts(task: Task, tokenizer) -> dict[tuple[int, ...], str]:
    """Every sentence of the task's dev and test splits as the model sees it (`Tokenizer.seen_as`),
    with the split it is in: what no file that adds training text may hold."""
    held_out: dict[tuple[int, ...], str] = {}
    for split in ("dev", "test"):
        if task.file(split) is not None:
            texts = [text for ex in read_split(task, split).examples for text in ex.texts]
            for key in tokenizer.seen_as(texts):
                if key:
                    held_out.setdefault(key, split)
    return held_out


def refuse_held_out(task: Task, path: Path, examples: list[Example], held_out: dict, tokenizer) -> None:
    """A file of training text (an unlabeled or silver file) with a sentence the model would see as
    one of the task's dev or test sentences is one UserError naming the file, the first such
    row's line and how many rows share one: text that is evaluated is never trained on."""
    keys = tokenizer.seen_as([text for ex in examples for text in ex.texts])
    shared, position = [], 0
    for ex in examples:
        splits = [held_out[key] for key in keys[position:position + len(ex.texts)] if key in held_out]
        position += len(ex.texts)
        if splits:
            shared.append((ex, splits[0]))
    if shared:
        first, split = shared[0]
        raise UserError(f"{path}:{first.line}: {len(shared)} of its {len(examples)} rows share a sentence with task "
                        f"{excerpt(task.name)}'s dev or test split as the model sees it (case, accents and spacing "
                        f"aside; this one: its {split} split); text that is evaluated must not be trained on: remove "
                        f"those rows")


def read_unlabeled(task: Task, tokenizer, *, limit: int | None = None) -> list[Example]:
    """The rows of the task's unlabeled files (its text columns; a teacher labels them), each
    `limit` rows at most. A file with a sentence of the task's dev or test split, as `tokenizer`
    reads it, is refused (refuse_held_out)."""
    held_out = held_out_texts(task, tokenizer)
    rows: list[Example] = []
    for file in task.unlabeled:
        path = Path(file)
        if not path.is_file():
            raise UserError(f"{path}: {path_problem(path)}; it is an unlabeled file of task {excerpt(task.name)}: fix "
                            f"the path in the task file")
        columns = [task.id, *task.text]
        with open_binary(path) if file_format(path) != "parquet" else contextlib.nullcontext() as stream:
            table = open_table(path, stream, quoting=task.quoting, columns=columns, reads=set(columns).__contains__)
            examples, _, _ = parse_rows(task, table, labeled=False, limit=limit)
        refuse_held_out(task, path, examples, held_out, tokenizer)
        rows.extend(examples)
    return rows


def read_splits(tasks: dict[str, Task], split: str, *, limit: int | None = None) -> dict[str, Split]:
    """One split of every task that has that split's file (every task for train and dev)."""
    return {name: read_split(task, split, limit=limit) for name, task in tasks.items()
            if split in REQUIRED_SPLITS or task.file(split) is not None}


def notes(*split_groups: dict[str, Split]) -> list[str]:
    """What reading these splits decided that the user should hear (once each): quotes read as
    text, rows left out for having no label of the task."""
    said = []
    for splits in split_groups:
        for split in splits.values():
            if split.note:
                said.append(split.note)
            if split.unlabeled and split.split != "test":
                said.append(f"{split.path}: {split.unlabeled} rows have no {split.task.label} "
                            f"(no example of {split.task.name})")
    return list(dict.fromkeys(said))


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
