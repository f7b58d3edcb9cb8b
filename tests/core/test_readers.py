"""mtcli.core.readers: data files as they are distributed read as they are. Quotes as CSV
quoting or as text (whichever every row fits, said once; a key forces one; a file that fits
neither names the key), JSON lines and Parquet giving the examples the TSV gives."""

import json
from pathlib import Path

import pytest

from mtcli.core.data import read_split
from mtcli.core.errors import DataError
from mtcli.core.readers import detect_quoting, open_table
from mtcli.core.tasks import load_task_file

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "external"

# MSRP's shape: a BOM, '#' and spaces in the header, quotes as text inside fields
MSRP = ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t702876\t702977\tAmrozi called him "the witness", of course.\tReferring to him as "the witness", he said.\n'
        '0\t2108705\t2108831\tYucaipa owned Dominick\'s "before\tYucaipa bought Dominick\'s in 1995.\n'
        '1\t1330381\t1330521\tHe said "yes".\t"Yes," he said.\n')

TASKS = """
[[task]]
name = "msrp"
kind = "binary"
text = ["#1 String", "#2 String"]
label = "Quality"
labels = ["no", "yes"]
id = "#1 ID"
train = "{train}"
dev = "{train}"
{extra}
"""


def _task(tmp_path, train, extra=""):
    path = tmp_path / "tasks.toml"
    path.write_text(TASKS.format(train=train, extra=extra))
    return load_task_file(path)["msrp"]


def test_literal_quotes_load_as_they_are_and_are_said_once(tmp_path):
    (tmp_path / "msrp.txt").write_text(MSRP, encoding="utf-8")
    split = read_split(_task(tmp_path, "msrp.txt"), "train")
    assert [ex.id for ex in split.examples] == ["702876", "2108705", "1330381"]
    assert split.examples[0].texts[0] == 'Amrozi called him "the witness", of course.'
    assert split.examples[1].texts[0] == "Yucaipa owned Dominick's \"before"  # an unbalanced quote, as written
    assert split.note.startswith(f"{tmp_path / 'msrp.txt'}: read quotes as literal text (with CSV quoting, line 4:")
    with pytest.raises(DataError, match=r"msrp.txt:4: malformed row"):
        read_split(_task(tmp_path, "msrp.txt", 'quoting = "csv"'), "train")


def test_csv_quoting_is_kept_where_every_row_fits_it(tmp_path):
    body = 'id\tsentence1\tsentence2\tsimilarity\nr1\t"a ""quoted"" word"\t"tab\tinside"\t3.0\n'
    (tmp_path / "q.tsv").write_text(body)
    assert detect_quoting(str(tmp_path / "q.tsv"), "\t") == ("csv", None)
    table = open_table(tmp_path / "q.tsv")
    assert next(table.rows)[1] == ["r1", 'a "quoted" word', "tab\tinside", "3.0"] and table.note is None
    literal = open_table(tmp_path / "q.tsv", quoting="literal")
    assert len(next(literal.rows)[1]) == 5  # the tab inside quotes splits when quotes are text


def test_a_file_that_fits_neither_reading_names_the_key(tmp_path):
    # row 2 fits only CSV quoting (a quoted tab), row 3 only literal quotes (text after a closing quote)
    body = 'a\tb\tc\n1\t"x\ty"\tz\n2\t"hi" there\tz\n'
    (tmp_path / "mixed.tsv").write_text(body)
    with pytest.raises(DataError, match=r'mixed.tsv:\d: fits neither reading of quotes: .* set quoting = "csv" or '
                                        r'"literal" \(task file key, or score --quoting\)'):
        detect_quoting(str(tmp_path / "mixed.tsv"), "\t")
    # rows that misfit either way are no matter of quotes: CSV quoting, and the row is reported when read
    (tmp_path / "short.tsv").write_text("a\tb\tc\n1\t2\t3\n4\t5\n")
    assert detect_quoting(str(tmp_path / "short.tsv"), "\t") == ("csv", None)


def _copies(tmp_path, rows: list[dict]):
    """The same rows as TSV, JSON lines and Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = list(rows[0])
    (tmp_path / "d.tsv").write_text("\t".join(names) + "\n" + "".join("\t".join(str(r[n]) for n in names) + "\n"
                                                                    for r in rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")


@pytest.mark.parametrize("suffix", ["tsv", "jsonl", "parquet"])
def test_jsonl_and_parquet_give_the_examples_tsv_gives(tmp_path, suffix):
    rows = [{"#1 ID": 10 + i, "#1 String": f"first {i}", "#2 String": f"second {i}", "Quality": i % 2}
            for i in range(7)]
    _copies(tmp_path, rows)
    split = read_split(_task(tmp_path, f"d.{suffix}"), "train")
    assert [(ex.id, ex.texts, ex.label) for ex in split.examples] == \
        [(str(10 + i), (f"first {i}", f"second {i}"), i % 2) for i in range(7)]


def test_per_row_errors_name_line_or_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "bad.jsonl").write_text('{"#1 String": "a", "#2 String": "b", "Quality": 1}\n{not json}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not a JSON object"):
        read_split(_task(tmp_path, "bad.jsonl"), "train")
    pq.write_table(pa.Table.from_pylist([{"#1 String": "a", "#2 String": "b", "Quality": 1},
                                         {"#1 String": "", "#2 String": "b", "Quality": 0}]), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad.parquet: row 2: empty #1 String"):
        read_split(_task(tmp_path, "bad.parquet"), "train")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"junk.parquet: cannot be read as Parquet"):
        read_split(_task(tmp_path, "junk.parquet"), "train")


def test_rows_without_a_label_are_no_example_of_the_task(tmp_path):
    """Partial labels: a file several tasks share may label a row for some of them only."""
    (tmp_path / "p.jsonl").write_text('{"#1 String": "a", "#2 String": "b", "Quality": 1}\n'
                                      '{"#1 String": "c", "#2 String": "d"}\n'
                                      '{"#1 String": "e", "#2 String": "f", "Quality": null}\n')
    split = read_split(_task(tmp_path, "p.jsonl"), "train")
    assert len(split.examples) == 1 and split.unlabeled == 2


@pytest.mark.skipif(not SHARED.is_dir(), reason="the public datasets of ../shared/data/external are not here")
def test_the_public_files_as_distributed(tmp_path):
    """MSRP (a BOM, literal quotes) and SICK (label names) read byte for byte as published."""
    text = """
[[task]]
name = "msrp"
kind = "binary"
text = ["#1 String", "#2 String"]
label = "Quality"
labels = ["different", "paraphrase"]
id = "#1 ID"
train = "msr-para-train.tsv"
dev = "msr-para-val.tsv"

[[task]]
name = "sick-e"
kind = "multiclass"
text = ["sentence_A", "sentence_B"]
label = "entailment_judgment"
labels = ["NEUTRAL", "ENTAILMENT", "CONTRADICTION"]
id = "pair_ID"
train = "SICK_train.txt"
dev = "SICK_trial.txt"
"""
    (tmp_path / "public.toml").write_text(text)
    tasks = load_task_file(tmp_path / "public.toml", SHARED)
    msrp = read_split(tasks["msrp"], "train")
    assert len(msrp) == 3576 and msrp.note and "literal" in msrp.note
    assert len(read_split(tasks["msrp"], "dev")) == 500
    sick = read_split(tasks["sick-e"], "train")
    assert len(sick) == 4500 and sick.note is None and {ex.label for ex in sick.examples} == {0, 1, 2}


def test_a_one_column_tsv_is_never_split_at_commas(tmp_path):
    """The name says TSV: a single-column file (no tab in its header) whose texts hold commas
    stays one column; a .csv is read by its first line, as CS224N's tab-separated .csv files need."""
    (tmp_path / "one.tsv").write_text("sentence\na great film, truly, deeply\nfine\n")
    table = open_table(tmp_path / "one.tsv")
    assert table.format == "tsv" and table.header == ["sentence"]
    assert [fields for _, fields in table.rows] == [["a great film, truly, deeply"], ["fine"]]
    (tmp_path / "tabs.csv").write_text("id\tsentence\nr1\ta, b\n")
    assert open_table(tmp_path / "tabs.csv").format == "tsv"
