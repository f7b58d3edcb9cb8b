"""Reading the CS224N files: counts, columns by header name, and bad rows named by file and line."""

import shutil

import pytest

from mtcli.core.data import read_split, resolve_data_dir, row_counts
from mtcli.core.errors import DataError, UserError
from conftest import builtin

EXPECTED_ROWS = {
    "sst": {"train": 8544, "dev": 1101, "test": 2210},
    "para": {"train": 13212, "dev": 3000, "test": 4000},
    "sts": {"train": 6040, "dev": 863, "test": 1725},
    "cfimdb": {"train": 1707, "dev": 245, "test": 488},
}


def test_bundled_row_counts():
    from mtcli.core.tasks import load_task_file

    assert row_counts(load_task_file("examples/cs224n-cfimdb.toml")) == EXPECTED_ROWS


def test_examples_have_texts_labels_and_lines():
    sst = read_split(builtin("sst"), "dev")
    assert sst.examples[0].line == 2 and len(sst.examples[0].texts) == 1
    assert set(sst.labels) == {0, 1, 2, 3, 4}
    para = read_split(builtin("para"), "train", limit=50)
    assert len(para) == 50 and set(para.labels) <= {0, 1} and len(para.examples[0].texts) == 2
    sts = read_split(builtin("sts"), "dev")
    assert all(0.0 <= y <= 5.0 for y in sts.labels) and isinstance(sts.labels[0], float)
    test = read_split(builtin("sst"), "test")  # header `0, "", id, sentence`: columns found by name
    assert test.examples[0].label is None and test.examples[0].id == "b7573736a6ddf7be102b7fee0"


def _write(tmp_path, task, split, text: bytes):
    shutil.copytree(builtin(task).file("dev").parent, tmp_path, dirs_exist_ok=True)
    (tmp_path / builtin(task).file(split).name).write_bytes(text)
    return tmp_path


HEADER_STS = b"\tid\tsentence1\tsentence2\tsimilarity\n"


@pytest.mark.parametrize("body, line, message", [
    (b"0\ta\tone\ttwo\t3.0\n1\tb\tone\ttwo\n", 3, "expected 5 columns, found 4"),
    (b"0\ta\tone\ttwo\t3.0\n1\tb\tone\ttwo\t7.5\n", 3, "out of range 0-5"),
    (b"0\ta\tone\ttwo\tx\n", 2, "is not a number"),
    (b"0\ta\t  \ttwo\t1.0\n", 2, "empty sentence1"),
    (b"0\ta\tone\ttwo\t1.0\n1\tb\t\"multi\nline\"\ttwo\t1.0\n2\tc\tbad \xff byte\tx\t1\n", 5, "not valid UTF-8"),
])
def test_bad_rows_name_file_and_line(tmp_path, body, line, message):
    data_dir = _write(tmp_path, "sts", "train", HEADER_STS + body)
    with pytest.raises(DataError, match=message) as info:
        read_split(builtin("sts", data_dir), "train")
    assert info.value.line == line and info.value.path.endswith("sts-train.csv")
    assert str(info.value).startswith(f"{data_dir / 'sts-train.csv'}:{line}: ")


def test_multiline_quoted_field_keeps_line_numbers(tmp_path):
    body = b"0\ta\t\"first\nsecond\"\ttwo\t1.0\n1\tb\tone\ttwo\t9\n"
    data_dir = _write(tmp_path, "sts", "train", HEADER_STS + body)
    with pytest.raises(DataError) as info:
        read_split(builtin("sts", data_dir), "train")
    assert info.value.line == 4


def test_sst_label_must_be_a_class(tmp_path):
    data_dir = _write(tmp_path, "sst", "train", b"\tid\tsentence\tsentiment\n0\ta\tgood\t2.5\n1\tb\tbad\t5\n")
    with pytest.raises(DataError, match="not a class index"):
        read_split(builtin("sst", data_dir), "train")
    skipped = _write(tmp_path, "sst", "train", b"\tid\tsentence\tsentiment\n0\ta\tgood\t2\n1\tb\tbad\t5\n")
    split = read_split(builtin("sst", skipped), "train", on_error="skip")
    assert len(split) == 1 and len(split.skipped) == 1 and split.skipped[0].line == 3


def test_empty_file_missing_column_missing_file(tmp_path):
    with pytest.raises(DataError, match="file is empty"):
        read_split(builtin("sts", _write(tmp_path, "sts", "train", b"")), "train")
    with pytest.raises(DataError, match="header has no column 'similarity'"):
        read_split(builtin("sts", _write(tmp_path, "sts", "train", b"\tid\tsentence1\tsentence2\tscore\n")), "train")
    (tmp_path / "quora-train.csv").unlink()
    with pytest.raises(UserError, match="quora-train.csv: not found; it is the train file of task 'para'"):
        read_split(builtin("para", tmp_path), "train")
    with pytest.raises(UserError, match="data folder not found"):
        builtin("para", resolve_data_dir(tmp_path / "missing"))


