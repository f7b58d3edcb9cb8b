"""The task registry: the one definition of each task that data loading, training,
evaluation, export and scoring all read. Torch-free on purpose.
"""

from dataclasses import dataclass
from typing import Literal

Kind = Literal["multiclass", "binary", "regression"]
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Task:
    name: str                       # short name used on the command line: sst, para, sts
    title: str                      # human-readable name for tables
    file_stem: str                  # CS224N file prefix: {file_stem}-{split}.csv
    text_columns: tuple[str, ...]   # one column (single sentence) or two (a pair)
    label_column: str
    kind: Kind
    label_range: tuple[float, float]
    label_names: tuple[str, ...] = ()   # classes, in label order (empty for regression)
    metric: str = "accuracy"        # the headline dev metric
    prediction_header: str = ""     # CS224N test-output column name

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def file_name(self, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return f"{self.file_stem}-{'test-student' if split == 'test' else split}.csv"

    def parse_label(self, raw: str) -> int | float:
        """The label of one data row; ValueError with a readable reason if it is not valid."""
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"label {raw!r} is not a number") from None
        low, high = self.label_range
        if not low <= value <= high:
            raise ValueError(f"label {raw!r} is out of range {low:g}-{high:g} for {self.name}")
        if self.kind == "regression":
            return value
        if value != int(value):
            raise ValueError(f"label {raw!r} is not a class index of {self.name} (0-{self.num_labels - 1})")
        return int(value)


SST = Task(
    name="sst",
    title="Sentiment (SST-5)",
    file_stem="ids-sst",
    text_columns=("sentence",),
    label_column="sentiment",
    kind="multiclass",
    label_range=(0, 4),
    label_names=("very negative", "negative", "neutral", "positive", "very positive"),
    metric="accuracy",
    prediction_header="Predicted_Sentiment",
)

PARA = Task(
    name="para",
    title="Paraphrase (Quora)",
    file_stem="quora",
    text_columns=("sentence1", "sentence2"),
    label_column="is_duplicate",
    kind="binary",
    label_range=(0, 1),
    label_names=("not duplicate", "duplicate"),
    metric="accuracy",
    prediction_header="Predicted_Is_Paraphrase",
)

STS = Task(
    name="sts",
    title="Similarity (STS-B)",
    file_stem="sts",
    text_columns=("sentence1", "sentence2"),
    label_column="similarity",
    kind="regression",
    label_range=(0.0, 5.0),
    metric="pearson",
    prediction_header="Predicted_Similiary",  # sic: the CS224N grader expects this spelling
)

# Binary movie-review sentiment shipped with the CS224N data; readable, not a multitask head.
CFIMDB = Task(
    name="cfimdb",
    title="Sentiment (CFIMDB)",
    file_stem="ids-cfimdb",
    text_columns=("sentence",),
    label_column="sentiment",
    kind="binary",
    label_range=(0, 1),
    label_names=("negative", "positive"),
    metric="accuracy",
    prediction_header="Predicted_Sentiment",
)

TASKS: dict[str, Task] = {t.name: t for t in (SST, PARA, STS)}
DATASETS: dict[str, Task] = {t.name: t for t in (SST, PARA, STS, CFIMDB)}


def get_task(name: str, *, registry: dict[str, Task] = DATASETS) -> Task:
    from mtcli.core.errors import UserError

    try:
        return registry[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}; expected one of {', '.join(registry)}") from None
