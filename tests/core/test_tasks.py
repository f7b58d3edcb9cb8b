"""mtcli.core.tasks: task files are read with tomllib, validated field by field, and every
mistake is one UserError naming the file, the task and the field."""

import re
from dataclasses import replace
from pathlib import Path

import pytest

from mtcli.core.errors import UserError
from mtcli.core.tasks import BUILTIN_TASK_FILE, load_task_file, rebase, tasks_from_dicts, with_encodings

TICKETS = """
[[task]]
name = "tickets"
kind = "multiclass"
text = ["body"]
label = "queue"
labels = ["billing", "bug", "other"]
metric = "accuracy"
train = "tickets-train.tsv"
dev = "tickets-dev.tsv"
"""


def _file(tmp_path, text, name="tasks.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_builtin_file_declares_the_cs224n_tasks():
    tasks = load_task_file()
    assert list(tasks) == ["sst", "para", "sts"]
    sst, para, sts = tasks.values()
    assert sst.kind == "multiclass" and sst.labels[0] == "very negative" and not sst.is_pair and sst.encoding is None
    assert para.kind == "binary" and para.encoding == "siamese" and para.text == ("sentence1", "sentence2")
    assert sts.kind == "regression" and sts.range == (0.0, 5.0) and sts.encoding == "cosine" and sts.metric == "pearson"
    assert sts.file("dev").name == "sts-dev.csv" and sts.file("dev").is_file()
    assert sts.test_header == "Predicted_Similiary" and BUILTIN_TASK_FILE.name == "cs224n.toml"


def test_a_user_task_file_resolves_paths_next_to_it(tmp_path):
    tasks = load_task_file(_file(tmp_path, TICKETS))
    task = tasks["tickets"]
    assert task.file("train") == tmp_path / "tickets-train.tsv" and task.file("test") is None
    assert task.metric == "accuracy" and task.id == "id" and task.test_header == "Predicted_queue"
    assert load_task_file(_file(tmp_path, TICKETS), data_dir=tmp_path / "elsewhere")["tickets"].file("dev") == \
        (tmp_path / "elsewhere" / "tickets-dev.tsv").resolve()


def test_labels_are_indices_or_names():
    task = load_task_file()["para"]
    assert task.parse_label("1.0") == 1 and task.parse_label("duplicate") == 1 and task.parse_label("0") == 0
    with pytest.raises(ValueError, match="not a class index or one of"):
        task.parse_label("maybe")
    with pytest.raises(ValueError, match="out of range 0-1"):
        task.parse_label("2")
    sts = load_task_file()["sts"]
    assert sts.parse_label("3.25") == 3.25
    with pytest.raises(ValueError, match="out of range 0-5"):
        sts.parse_label("5.5")


def test_defaults_of_optional_fields(tmp_path):
    text = """
[[task]]
name = "pairs"
kind = "regression"
text = ["q", "a"]
label = "score"
range = [1, 7]
train = "t.csv"
dev = "d.csv"
"""
    task = load_task_file(_file(tmp_path, text))["pairs"]
    assert task.metric == "pearson" and task.encoding == "cross" and task.range == (1.0, 7.0)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('kind = "multiclass"', 'kind = "ranking"'), "task 'tickets': kind: 'ranking' is not one of"),
    (lambda t: t.replace('label = "queue"\n', ""), "task 'tickets': label: missing"),
    (lambda t: t.replace('name = "tickets"', 'name = "Tickets!"'), "task 'Tickets!': name: 'Tickets!' must be lower-case"),
    (lambda t: t.replace('name = "tickets"\n', ""), "task #1: name: missing"),
    (lambda t: t.replace('text = ["body"]', 'text = ["a", "b", "c"]'), "task 'tickets': text: expected one column name"),
    (lambda t: t.replace('labels = ["billing", "bug", "other"]', 'labels = ["a", "a"]'), "labels: expected distinct"),
    (lambda t: t.replace('labels = ["billing", "bug", "other"]', 'labels = ["a"]'), "labels: a multiclass task has at least 2"),
    (lambda t: t.replace('kind = "multiclass"', 'kind = "binary"'), "labels: a binary task has 2 class names"),
    (lambda t: t.replace('metric = "accuracy"', 'metric = "pearson"'), "metric: 'pearson' is not a metric of a multiclass task"),
    (lambda t: t.replace('metric = "accuracy"', 'metric = "accuracy"\nencoding = "siamese"'), "encoding: only a pair task"),
    (lambda t: t.replace('metric = "accuracy"', 'metric = "accuracy"\nrange = [0, 1]'), "range: a classification task declares labels"),
    (lambda t: t.replace('dev = "tickets-dev.tsv"', ''), "task 'tickets': dev: missing"),
    (lambda t: t.replace('train = "tickets-train.tsv"', 'train = 3'), "train: expected a non-empty string"),
    (lambda t: t.replace('metric = "accuracy"', 'metric = "accuracy"\nlables = []'), "lables: unknown field"),
    (lambda t: t.replace('label = "queue"', 'label = "body"'), "label: 'body' is also a text or id column"),
    (lambda t: t + t, "task 'tickets': name: declared twice"),
    (lambda t: t.replace("[[task]]", "[task]"), "declares no task"),
    (lambda t: "", "declares no task"),
    (lambda t: t + "\n[other]\nx = 1\n", "unknown top-level key 'other'"),
    (lambda t: t.replace('kind = "multiclass"', 'kind = multiclass'), "not valid TOML"),
    (lambda t: "".join(t.replace('"tickets"', f'"t{i}"') for i in range(9)), "declares 9 tasks; mtcli trains 1 to 8"),
])
def test_a_bad_task_file_is_one_error_naming_file_task_and_field(tmp_path, edit, message):
    path = _file(tmp_path, edit(TICKETS))
    with pytest.raises(UserError) as caught:
        load_task_file(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value), str(caught.value)


def test_regression_range_and_pair_encodings(tmp_path):
    base = """
[[task]]
name = "sim"
kind = "regression"
text = ["a", "b"]
label = "y"
train = "t"
dev = "d"
"""
    for extra, message in (("", "range: expected [low, high]"), ("range = [5, 1]", "range: expected [low, high]"),
                           ('range = [0, 5]\nencoding = "siamese"', "encoding: 'siamese' is not a pair encoding of a regression"),
                           ('range = [0, 5]\nlabels = ["x", "y"]', "labels: a regression task has no class names")):
        with pytest.raises(UserError, match=re.escape(message)):
            load_task_file(_file(tmp_path, base + extra))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UserError, match="task file not found"):
        load_task_file(tmp_path / "nope.toml")
    with pytest.raises(UserError, match="is a folder"):
        load_task_file(tmp_path)


def test_round_trip_through_dicts_and_overrides():
    tasks = load_task_file()
    again = tasks_from_dicts([t.to_dict() for t in tasks.values()], "manifest.json")
    assert again == {name: replace(t, files={s: Path(f).name for s, f in t.files.items()}) for name, t in tasks.items()}
    assert again == tasks_from_dicts([t.declaration() for t in tasks.values()], "manifest.json")  # names only
    crossed = with_encodings(tasks, {"para": "cross", "sts": "cross"})
    assert crossed["para"].encoding == "cross" and tasks["para"].encoding == "siamese"
    with pytest.raises(UserError, match="--encoding sst=cross: sst is a single-sentence task"):
        with_encodings(tasks, {"sst": "cross"})
    with pytest.raises(UserError, match="a regression pair task is encoded cross or cosine"):
        with_encodings(tasks, {"sts": "siamese"})
    with pytest.raises(UserError, match="--encoding names unknown task"):
        with_encodings(tasks, {"nli": "cross"})
    moved = rebase(tasks, "/data/elsewhere")
    assert str(moved["sst"].file("train")) == "/data/elsewhere/ids-sst-train.csv"


# ---------------------------------------------------------------- hostile-inputs issue, points 5, 6, 14

def _binary(labels):
    from mtcli.core.tasks import task_from_table

    return task_from_table({"name": "t", "kind": "binary", "text": ["s"], "label": "y", "labels": labels,
                            "train": "a", "dev": "b"}, "tasks.toml", None)


def test_numeric_class_names_are_names_in_every_spelling():
    """labels = ["1", "0"]: `1`, `1.0` and `1e0` are all the class named 1 (index 0), never index 1."""
    task = _binary(["1", "0"])
    assert [task.parse_label(x) for x in ("1", "1.0", "1e0", "01", "0", "0.0", "-0")] == [0, 0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="not one of 1, 0 \\(the class names are numbers, so a number"):
        task.parse_label("2")
    words = _binary(["ham", "spam"])
    assert [words.parse_label(x) for x in ("ham", "spam", "0", "1.0", "1e0")] == [0, 1, 0, 1, 1]
    with pytest.raises(ValueError, match="is not a class index or one of"):
        words.parse_label("nan")


@pytest.mark.parametrize("name", ["embed", "abc\n", "Abc", "a.b", "x" * 33, "-a"])
def test_names_that_could_collide_or_escape_are_refused(name):
    from mtcli.core.tasks import task_from_table

    with pytest.raises(UserError, match="name: "):
        task_from_table({"name": name, "kind": "binary", "text": ["s"], "label": "y", "labels": ["a", "b"],
                         "train": "a", "dev": "b"}, "tasks.toml", None)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True).filter(lambda n: n != "embed")
NAMES = st.one_of(NAMES, st.sampled_from(["scatter", "confusion", "curves", "weights", "conflicts", "tokenizer",
                                          "manifest", "eval", "report", "config", "metrics", "data"]))


@settings(max_examples=200, deadline=None)
@given(tasks=st.dictionaries(NAMES, st.sampled_from(["multiclass", "binary", "regression"]), min_size=1, max_size=8))
def test_no_two_outputs_share_a_file_name_whatever_the_task_names(tasks):
    """Everything mtcli writes into an export folder or a run folder, for any task names: graphs
    (whole, pair head, int8), the embedding graph, plots, test predictions, its own files."""
    from mtcli.core.tasks import plot_names_of
    from mtcli.core.tasks import EMBEDDING, test_output_name
    from mtcli.inference.manifest import GRAPH_SUFFIXES, graph_file

    export = [graph_file(name, key) for name in [*tasks, EMBEDDING] for key in GRAPH_SUFFIXES]
    per_task = [f for name, kind in tasks.items() for f in (*plot_names_of(name, kind), test_output_name(name))]
    own = ["manifest.json", "tokenizer.json", "eval.json", "config.json", "data.json", "metrics.jsonl", "report.json",
           "curves.png", "conflicts.png", "weights.png", "best", "last"]
    everything = export + per_task + own
    assert len(everything) == len(set(everything))


def test_many_classes_are_looked_up_in_constant_time_and_bounded(tmp_path):
    """5,000 class names: each row's label is one lookup, and an error names a few of them, not all."""
    import time

    from mtcli.core.tasks import MAX_CLASSES, Task, load_task_file

    names = tuple(f"class{i}" for i in range(5000))
    task = Task(name="x", kind="multiclass", text=("s",), label="y", labels=names)
    start = time.perf_counter()
    assert [task.parse_label(f"class{i}") for i in range(0, 5000, 7)] == list(range(0, 5000, 7))
    assert time.perf_counter() - start < 1.0   # generous: the quadratic lookup took seconds
    with pytest.raises(ValueError, match=r"one of class0, class1, .*, class9, \.\.\. \(5000 classes\)$"):
        task.parse_label("nope")
    numeric = Task(name="n", kind="multiclass", text=("s",), label="y", labels=("1", "0", "2.0"))
    assert [numeric.parse_label(raw) for raw in ("1.0", "2", "0", "1e0")] == [0, 2, 1, 0]
    many = ", ".join(f'"c{i}"' for i in range(MAX_CLASSES + 1))
    (tmp_path / "t.toml").write_text(f"""[[task]]
name = "big"
kind = "multiclass"
text = ["s"]
label = "y"
train = "a.tsv"
dev = "a.tsv"
labels = [{many}]
""")
    with pytest.raises(UserError, match="a task has at most 10,000 class names, found 10,001"):
        load_task_file(tmp_path / "t.toml")
