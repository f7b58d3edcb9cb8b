"""Tasks as declared data: the one definition of each task that data loading, training,
evaluation, export and scoring all read. Torch-free on purpose.

A task file (TOML) declares tasks, one `[[task]]` table each:

    [[task]]
    name = "tickets"                 # what `mtcli score NAME` and the manifest call it
    kind = "multiclass"              # multiclass | binary | regression
    text = ["body"]                  # one column, or two for a pair
    label = "queue"                  # label column
    labels = ["billing", "bug", "other"]   # classification: names in label-index order
    # range = [0, 5]                 # regression: the label range, also the output scale
    metric = "accuracy"              # see METRICS (accuracy, f1, macro_f1, mcc, roc_auc; pearson, spearman)
    # encoding = "siamese"           # pairs: cross | siamese (classification), cross | cosine (regression)
    train = "tickets-train.tsv"      # TSV/CSV with a header, .jsonl or .parquet; paths relative to this file
    dev = "tickets-dev.tsv"
    # test = "tickets-test.tsv"      # optional; with labels, `eval --split test` reports metrics too
    # unlabeled = ["more.tsv"]       # optional: text only, labelled by a teacher (`train --teacher`)
    # quoting = "literal"            # TSV/CSV quotes: auto (whichever every row fits) | csv | literal
    # predictions = "index"          # test prediction files: class names (default) or indices

Optional extras: `id` (the id column, default "id"; rows without one are numbered by
line), `title` (for tables) and `prediction_header` (the column name of `eval --split
test` files). The CS224N three are the built-in file `cs224n.toml` beside this module.
What a task *does* (its head, loss, prediction, output scale) follows from its kind and
arity alone: see mtcli.model.heads.
"""

import math
import os
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path, PurePath

from mtcli.core.errors import UserError, excerpt
from mtcli.core.fileio import read_toml
from mtcli.core.paths import DEFAULT_DATA_DIR

KINDS = ("multiclass", "binary", "regression")
# The metrics of each kind (a task's `metric` is its headline; eval reports them all). f1: the
# positive class's F1 (binary) or the classes' mean (multiclass); macro_f1: the classes' mean
# in both; mcc: Matthews correlation (GLUE's CoLA); roc_auc: from the probabilities (binary;
# one-vs-rest mean for multiclass).
CLASSIFICATION = ("multiclass", "binary")
METRICS = {"accuracy": CLASSIFICATION, "f1": CLASSIFICATION, "macro_f1": CLASSIFICATION, "mcc": CLASSIFICATION,
           "roc_auc": CLASSIFICATION, "pearson": ("regression",), "spearman": ("regression",)}
CORRELATIONS = ("pearson", "spearman", "mcc")   # in [-1, 1]: mapped to (r + 1) / 2 in the overall score
PAIR_ENCODINGS = {"multiclass": ("cross", "siamese"), "binary": ("cross", "siamese"), "regression": ("cross", "cosine")}
DEFAULT_PAIR_ENCODING = "cross"
SPLITS = ("train", "dev", "test")
REQUIRED_SPLITS = ("train", "dev")
MAX_TASKS = 8
BUILTIN_TASK_FILE = Path(__file__).with_name("cs224n.toml")
NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")   # matched whole (fullmatch): no trailing newline slips through
EMBEDDING = "embed"   # the name of an export's sentence-embedding graph (embed.onnx): not a task's name
RESERVED_NAMES = {EMBEDDING: "the export's sentence-embedding graph is embed.onnx"}
MAX_CLASSES = 10_000   # a head, its confusion matrix and its metrics grow with the classes: bounded
MAX_RANGE = 1e9       # regression labels beyond this overflow the float32 squared error: rescale them
KEYS = {"name", "kind", "text", "label", "labels", "range", "metric", "encoding", *SPLITS, "id", "title",
        "prediction_header", "quoting", "predictions", "unlabeled"}
MAX_UNLABELED_FILES = 64
QUOTINGS = ("auto", "csv", "literal")   # how delimited text reads quotes (mtcli.core.readers)
PREDICTIONS = ("name", "index")         # what a classification task's test prediction files hold


@dataclass(frozen=True)
class Task:
    name: str
    kind: str                          # multiclass | binary | regression
    text: tuple[str, ...]              # one text column, or two for a pair
    label: str                         # the label column
    labels: tuple[str, ...] = ()       # class names in label-index order (classification)
    range: tuple[float, float] | None = None   # label range and output scale (regression)
    metric: str = "accuracy"
    encoding: str | None = None        # pairs: cross | siamese | cosine; None for one sentence
    files: dict[str, str] = field(default_factory=dict)   # split -> file path, absolute once loaded
    id: str = "id"
    title: str = ""
    prediction_header: str = ""
    quoting: str = "auto"              # delimited files: quotes as CSV quoting, as text, or whichever fits
    predictions: str = "name"          # test prediction files: class names, or indices (CS224N's files)
    unlabeled: tuple[str, ...] = ()    # files of text without labels, for a teacher to label (training only)

    @property
    def is_pair(self) -> bool:
        return len(self.text) == 2

    @property
    def is_regression(self) -> bool:
        return self.kind == "regression"

    @property
    def head_is_cosine(self) -> bool:
        """Its head is the scaled cosine of the pair's embeddings: a head without parameters."""
        return self.kind == "regression" and self.encoding == "cosine"

    @property
    def label_range(self) -> tuple[float, float]:
        """The valid label values: the declared range, or the class indices."""
        return self.range if self.is_regression else (0, len(self.labels) - 1)

    @property
    def heading(self) -> str:
        return self.title or self.name

    @property
    def test_header(self) -> str:
        return self.prediction_header or f"Predicted_{self.label}"

    def file(self, split: str) -> Path | None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {excerpt(split)}; expected one of {', '.join(SPLITS)}")
        return Path(self.files[split]) if split in self.files else None

    @property
    def numeric_labels(self) -> bool:
        """Whether some class name is a number (`labels = ["1", "0"]`): then every number in the
        data is read as a class name, never as a class index."""
        return bool(self._class_of_number)

    @cached_property
    def _class_of_name(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.labels)}

    @cached_property
    def _class_of_number(self) -> dict[float, int]:
        """The class each numeric class name names (the first, where two spell one number)."""
        found: dict[float, int] = {}
        for index, name in enumerate(self.labels):
            number = _number(name)
            if number is not None:
                found.setdefault(number, index)
        return found

    def _names(self) -> str:
        """The class names for an error message: all of a few, the first of many."""
        shown = ", ".join(self.labels[:10])
        return shown if len(self.labels) <= 10 else f"{shown}, ... ({len(self.labels)} classes)"

    def parse_label(self, raw: str) -> int | float:
        """The label of one data row; ValueError if invalid.

        Regression: a number in the declared range. Classification, one rule for every
        spelling: a label is a class name (numbers compared as numbers, so `1`, `1.0` and
        `1e0` name the same class); only when no class name is a number may a label also
        be a class index (`0` .. `C-1`, as `1` or `1.0`)."""
        number = _number(raw)
        if self.is_regression:
            if number is None:
                raise ValueError(f"label {excerpt(raw)} is not a number")
            low, high = self.label_range
            if not low <= number <= high:
                raise ValueError(f"label {excerpt(raw)} is out of range {low:g}-{high:g} for {self.name}")
            return number
        if raw in self._class_of_name:
            return self._class_of_name[raw]
        if self.numeric_labels:
            if number is not None and number in self._class_of_number:
                return self._class_of_number[number]
            raise ValueError(f"label {excerpt(raw)} is not one of {self._names()} (the class names are numbers, "
                             f"so a number in the data is a class name, not an index)")
        if number is None:
            raise ValueError(f"label {excerpt(raw)} is not a class index or one of {self._names()}")
        if not 0 <= number <= len(self.labels) - 1:
            raise ValueError(f"label {excerpt(raw)} is out of range 0-{len(self.labels) - 1} for {self.name}")
        if number != int(number):
            raise ValueError(f"label {excerpt(raw)} is not a class index of {self.name} (0-{len(self.labels) - 1})")
        return int(number)

    def declaration(self) -> dict:
        """The declaration as artifacts store it (checkpoints, manifests): data files by name
        only, so that an artifact never points a reader at a path (see `artifact_tasks`)."""
        table = self.to_dict()
        table.update({split: Path(path).name for split, path in self.files.items()})
        return table

    def to_dict(self) -> dict:
        """The declaration, with absolute file paths (what checkpoints and manifests store)."""
        table = {"name": self.name, "kind": self.kind, "text": list(self.text), "label": self.label,
                 "metric": self.metric, **self.files, "id": self.id}
        if self.labels:
            table["labels"] = list(self.labels)
        if self.range is not None:
            table["range"] = list(self.range)
        for key in ("encoding", "title", "prediction_header"):
            if getattr(self, key):
                table[key] = getattr(self, key)
        if self.quoting != "auto":
            table["quoting"] = self.quoting
        if self.predictions != "name":
            table["predictions"] = self.predictions
        return table


# ---------------------------------------------------------------- reading declarations

def task_from_table(table, source: str | Path, base: Path | None, index: int = 0) -> Task:
    """One validated Task from a [[task]] table. Every problem is one UserError naming
    `source`, the task and the field. Relative file paths are resolved against `base`."""
    where = f"{source}: task {excerpt(table.get('name'))}" if isinstance(table, dict) and isinstance(table.get("name"), str) \
        else f"{source}: task #{index + 1}"

    def bad(key: str, problem: str):
        raise UserError(f"{where}: {key}: {problem}")

    if not isinstance(table, dict):
        raise UserError(f"{where}: expected a [[task]] table")
    unknown = sorted(set(table) - KEYS)
    if unknown:
        bad(unknown[0], f"unknown field; a task has {', '.join(sorted(KEYS))}")

    def text_field(key: str, required: bool = True) -> str | None:
        if key not in table:
            if required:
                bad(key, "missing")
            return None
        if not isinstance(table[key], str) or not table[key].strip():
            bad(key, f"expected a non-empty string, found {excerpt(table[key])}")
        return table[key]

    name = text_field("name")
    if not NAME.fullmatch(name):
        bad("name", f"{excerpt(name)} must be lower-case letters, digits, '-' or '_', starting with a letter (at most 32)")
    if name in RESERVED_NAMES:
        bad("name", f"{excerpt(name)} is reserved ({RESERVED_NAMES[name]}): name the task otherwise, e.g. {name}-task")
    kind = text_field("kind")
    if kind not in KINDS:
        bad("kind", f"{excerpt(kind)} is not one of {', '.join(KINDS)}")
    text = table.get("text")
    if isinstance(text, str):
        text = [text]
    if not isinstance(text, list) or len(text) not in (1, 2) or not all(isinstance(t, str) and t for t in text) \
            or len(set(text)) != len(text):
        bad("text", f"expected one column name, or two for a pair, found {excerpt(table.get('text'))}")
    label = text_field("label")
    if label in text or label == table.get("id", "id"):
        bad("label", f"{excerpt(label)} is also a text or id column")

    labels, value_range = (), None
    if kind == "regression":
        if "labels" in table:
            bad("labels", "a regression task has no class names; declare range = [low, high]")
        value_range = table.get("range")
        if not isinstance(value_range, list) or len(value_range) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value_range) \
                or not value_range[0] < value_range[1]:
            bad("range", f"expected [low, high] with low < high, found {excerpt(value_range)}")
        if max(abs(v) for v in value_range) > MAX_RANGE:
            bad("range", f"{excerpt(value_range)} reaches beyond ±{MAX_RANGE:g}, where squared errors overflow float32: "
                         f"rescale the labels (for example to thousands)")
        value_range = (float(value_range[0]), float(value_range[1]))
    else:
        if "range" in table:
            bad("range", "a classification task declares labels, not a range")
        labels = table.get("labels")
        if not isinstance(labels, list) or not all(isinstance(l, str) and l.strip() for l in labels) \
                or len(set(labels)) != len(labels):
            bad("labels", f"expected distinct class names in label-index order, found {excerpt(labels)}")
        if kind == "binary" and len(labels) != 2:
            bad("labels", f"a binary task has 2 class names (negative, positive), found {len(labels)}")
        if kind == "multiclass" and len(labels) < 2:
            bad("labels", f"a multiclass task has at least 2 class names, found {len(labels)}")
        if len(labels) > MAX_CLASSES:
            bad("labels", f"a task has at most {MAX_CLASSES:,} class names, found {len(labels):,}")
        labels = tuple(labels)

    metric = text_field("metric", required=False) or ("pearson" if kind == "regression" else "accuracy")
    if kind not in METRICS.get(metric, ()):
        allowed = [m for m, kinds in METRICS.items() if kind in kinds]
        bad("metric", f"{excerpt(metric)} is not a metric of a {kind} task ({', '.join(allowed)})")

    encoding = text_field("encoding", required=False)
    if len(text) == 1 and encoding is not None:
        bad("encoding", "only a pair task (two text columns) has an encoding")
    if len(text) == 2:
        encoding = encoding or DEFAULT_PAIR_ENCODING
        if encoding not in PAIR_ENCODINGS[kind]:
            bad("encoding", f"{excerpt(encoding)} is not a pair encoding of a {kind} task ({', '.join(PAIR_ENCODINGS[kind])})")

    quoting = text_field("quoting", required=False) or "auto"
    if quoting not in QUOTINGS:
        bad("quoting", f"{excerpt(quoting)} is not one of {', '.join(QUOTINGS)} (how a TSV or CSV file reads quotes)")

    predictions = text_field("predictions", required=False) or "name"
    if predictions not in PREDICTIONS:
        bad("predictions", f"{excerpt(predictions)} is not one of {', '.join(PREDICTIONS)} (what test prediction files hold)")
    if predictions != "name" and kind == "regression":
        bad("predictions", "a regression task's predictions are scores")

    files = {}
    for split in SPLITS:
        path = text_field(split, required=split in REQUIRED_SPLITS)
        if path is not None:
            files[split] = str(Path(path) if base is None else Path(os.path.realpath(base / path)))
    unlabeled = table.get("unlabeled", [])
    if not (isinstance(unlabeled, list) and all(isinstance(f, str) and f.strip() and "\0" not in f for f in unlabeled)):
        bad("unlabeled", "a list of file names (text without labels, for a teacher to label)")
    if len(unlabeled) > MAX_UNLABELED_FILES:
        bad("unlabeled", f"{len(unlabeled)} files; at most {MAX_UNLABELED_FILES}")
    unlabeled = tuple(str(Path(f) if base is None else Path(os.path.realpath(base / f))) for f in unlabeled)
    return Task(name=name, kind=kind, text=tuple(text), label=label, labels=labels, range=value_range, metric=metric,
                encoding=encoding, files=files, id=text_field("id", required=False) or "id",
                title=text_field("title", required=False) or "",
                prediction_header=text_field("prediction_header", required=False) or "", quoting=quoting,
                predictions=predictions, unlabeled=unlabeled)


def tasks_from_tables(tables, source: str | Path, base: Path | None = None) -> dict[str, Task]:
    """Validated tasks, in declaration order, from a list of tables."""
    if not isinstance(tables, list) or not tables:
        raise UserError(f"{source}: declares no task; add one [[task]] table per task")
    if len(tables) > MAX_TASKS:
        raise UserError(f"{source}: declares {len(tables)} tasks; mtcli trains 1 to {MAX_TASKS}")
    tasks: dict[str, Task] = {}
    for index, table in enumerate(tables):
        task = task_from_table(table, source, base, index)
        if task.name in tasks:
            raise UserError(f"{source}: task {excerpt(task.name)}: name: declared twice")
        tasks[task.name] = task
    return tasks


def load_task_file(path: str | Path | None = None, data_dir: str | Path | None = None) -> dict[str, Task]:
    """The tasks of a task file (None: the built-in CS224N file). Data paths are relative to
    `data_dir` when given, else to the task file's folder (the bundled data/ for the built-in)."""
    builtin = path is None
    path = BUILTIN_TASK_FILE if builtin else Path(path)
    shown = "built-in tasks" if builtin else path
    _, document = read_toml(path, "task file")
    extra = sorted(set(document) - {"task"})
    if extra:
        raise UserError(f"{path}: unknown top-level key {excerpt(extra[0])}; a task file holds [[task]] tables")
    base = Path(data_dir) if data_dir is not None else (DEFAULT_DATA_DIR if builtin else path.parent)
    return tasks_from_tables(document.get("task"), shown if builtin else path, base)


def tasks_from_dicts(tables: list[dict], source: str | Path) -> dict[str, Task]:
    """Tasks stored by a checkpoint or manifest, validated as a task file is. Their data files
    are kept by name only, whatever the artifact says (earlier versions stored absolute
    paths; a hostile one may name any file): where the data lies is the reader's to say
    (mtcli.core.data.locate_data)."""
    tasks = tasks_from_tables(tables, source, None)
    return {name: replace(task, files={split: file_name(path, f"{source}: task {excerpt(name)}: {split}")
                                       for split, path in task.files.items()})
            for name, task in tasks.items()}


def file_name(path: str, where: str) -> str:
    """The last component of a stored data path: what an artifact may say about its data."""
    name = PurePath(path.replace("\\", "/")).name
    if name in ("", ".", ".."):
        raise UserError(f"{where}: {excerpt(path)} names no file; the artifact is damaged: re-create it")
    return name


def rebase(tasks: dict[str, Task], data_dir: str | Path | None) -> dict[str, Task]:
    """The same tasks reading their files by name from `data_dir` (None: unchanged)."""
    if data_dir is None:
        return tasks
    folder = Path(data_dir)
    return {name: replace(t, files={s: os.path.realpath(folder / Path(f).name) for s, f in t.files.items()})
            for name, t in tasks.items()}


def with_encodings(tasks: dict[str, Task], encodings: dict[str, str], option: str = "--encoding") -> dict[str, Task]:
    """The tasks with some pair encodings overridden (e.g. from the command line)."""
    result = dict(tasks)
    check_names(tasks, encodings, option)
    for name, encoding in encodings.items():
        task = tasks[name]
        if not task.is_pair:
            raise UserError(f"{option} {name}={encoding}: {name} is a single-sentence task; only pairs have an encoding")
        if encoding not in PAIR_ENCODINGS[task.kind]:
            raise UserError(f"{option} {name}={encoding}: a {task.kind} pair task is encoded "
                            f"{' or '.join(PAIR_ENCODINGS[task.kind])}")
        result[name] = replace(task, encoding=encoding)
    return result


def check_names(tasks: dict[str, Task], names, option: str) -> None:
    unknown = sorted(set(names) - set(tasks))
    if unknown:
        raise UserError(f"{option} names unknown task(s) {', '.join(unknown)}; tasks are {', '.join(tasks)}")


def test_output_name(task: str) -> str:
    """The file `eval --split test` writes a task's predictions to (CS224N's naming)."""
    return f"{task}-test-output.csv"


def plot_names_of(name: str, kind: str) -> list[str]:
    """The plots eval draws for a task, each kind's under a prefix of its own, so no two tasks'
    plots share a name whatever the tasks are called (a multiclass `scatter` and a regression
    `confusion` included)."""
    return {"multiclass": [f"confusion_{name}.png"], "regression": [f"scatter_{name}.png"]}.get(kind, [])


def _number(text: str) -> float | None:
    """`text` as a finite number, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
