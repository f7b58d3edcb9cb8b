"""mtcli.core.tsv: the streaming reader never crashes on arbitrary bytes (only one-line
errors naming the file), the writer quotes so that every row reads back, and the
delimiter of a data file is found from its header line."""

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import builtin
from mtcli.core.data import parse_rows
from mtcli.core.readers import open_table
from mtcli.core.errors import UserError
from mtcli.core.tsv import TsvWriter, iter_rows, sniff_delimiter
from mtcli.inference.score import ScoreStats, read_score_rows

TASKS = builtin()


def test_writer_rows_read_back_with_csv():
    rows = [["a\tb", "c\nd", 'e"f', "g\rh", "", " i ", "j,k"], ["plain", "x", "y", "z", "1", "2", "3"]]
    for delimiter in ("\t", ","):
        out = io.StringIO(newline="")
        TsvWriter(out, delimiter=delimiter).writerows(rows)
        assert list(csv.reader(io.StringIO(out.getvalue(), newline=""), delimiter=delimiter, strict=True)) == rows
        assert [f for _, f in iter_rows(io.BytesIO(out.getvalue().encode()), "x", delimiter=delimiter)] == rows
    plain = io.StringIO(newline="")
    TsvWriter(plain).writerow(["id", "score"])
    assert plain.getvalue() == "id\tscore\n"  # nothing quoted that needs no quotes


def test_delimiter_comes_from_the_header_line(tmp_path):
    (tmp_path / "a.tsv").write_text("id\ttext\nx\ty,z\n")
    (tmp_path / "b.csv").write_text("id,text\nx,\"y\tz\"\n")
    assert sniff_delimiter(tmp_path / "a.tsv") == "\t" and sniff_delimiter(tmp_path / "b.csv") == ","


_tsv_bytes = st.lists(st.one_of(
    st.binary(max_size=40),
    st.lists(st.one_of(st.text(max_size=12), st.sampled_from(['"', '""', "\t", "\r", "\x00", "id", "sentence",
                                                            "sentence1", "sentence2", "3.5", "é"])),
             max_size=6).map(lambda parts: "\t".join(parts).encode("utf-8", "surrogatepass"))),
    max_size=8).map(lambda lines: b"\n".join(lines))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_tsv_bytes, task=st.sampled_from(sorted(TASKS)), on_error=st.sampled_from(["fail", "skip"]))
def test_fuzz_score_input_never_crashes(body, task, on_error):
    stats = ScoreStats()
    try:
        for row_id, texts in read_score_rows(io.BytesIO(body), "fuzz.tsv", TASKS[task], stats, on_error):
            assert isinstance(row_id, str) and all(t.strip() for t in texts)
    except UserError as e:
        assert str(e).startswith("fuzz.tsv")


@settings(max_examples=300, deadline=None)
@given(body=_tsv_bytes, task=st.sampled_from(sorted(TASKS)), labeled=st.booleans())
def test_fuzz_training_reader_never_crashes(body, task, labeled):
    try:
        table = open_table("fuzz.tsv", io.BytesIO(body), quoting="csv")
        examples, _, _ = parse_rows(TASKS[task], table, labeled=labeled, on_error="fail")
    except UserError as e:
        assert str(e).startswith("fuzz.tsv")
