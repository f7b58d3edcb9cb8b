"""Data files as they are distributed: TSV or CSV (quotes as CSV quoting, or as literal text),
JSON lines and Parquet. One reader for training, eval and score (and the Ray engine's read
task), so a file reads the same everywhere. Torch-free; Parquet needs pyarrow (the
`parquet` extra).

A file's format comes from its name: .jsonl/.ndjson and .parquet/.pq; any other name is
delimited text, split on tabs if its first line holds one, else on commas (CS224N's .csv
files hold tabs). Delimited
text with a header row reads its quotes as CSV quoting when every row then has the header's
number of fields, else as literal text when every row then has it (MSRP, GLUE, SICK write
quotes as text), said once in one line; a file that fits neither is an error naming the
`quoting` key that forces a reading. Standard input is read as it comes (CSV quoting,
unless told otherwise): it cannot be read twice.

Every row comes with its number: the line it starts on for delimited text and JSON lines,
its row number (from 1) for Parquet, so every error names file and line or row.
"""

import itertools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mtcli.core.errors import DataError, UserError, excerpt
from mtcli.core.fileio import check_regular, parse_json
from mtcli.core.tsv import QUOTINGS, _LineCounter, iter_rows, open_binary

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".tsv": "tsv", ".tab": "tsv"}
DELIMITERS = {"tsv": "\t", "csv": ","}
NAMED = ("jsonl", "parquet")   # formats whose rows name their columns (no header row, no positions)
PARQUET_BATCH = 4096


def file_format(path: str | Path) -> str:
    """jsonl, parquet or tsv from the file's name; else (.csv, .txt, ...) tsv or csv by its first line,
    tabs or not: CS224N's .csv files are tab-separated, and a one-column .tsv whose texts hold
    commas must not be split at them."""
    if str(path) == "-":
        return "tsv"
    suffix = Path(path).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    with open_binary(path) as stream:
        return "tsv" if b"\t" in stream.readline() else "csv"


@dataclass
class Table:
    """The rows of a data file: `header` names the columns (None for delimited text read without
    a header: positions), `rows` gives (number, values) with None where a named format lacks a
    value. `note` is what the reader decided that the user should hear once."""
    path: str
    format: str
    header: list[str] | None
    rows: Iterator[tuple[int, list]]
    note: str | None = None
    row_unit: str = "line"

    def error(self, number: int | None, problem: str) -> DataError:
        return DataError(self.path, number, problem, unit=self.row_unit)


def open_table(path: str | Path, stream=None, *, header: bool = True, quoting: str = "auto",
               on_bad_row: Callable[[DataError], None] | None = None, lines: _LineCounter | None = None,
               columns: list[str] = (), reads: Callable[[str], bool] | None = None) -> Table:
    """The rows of the file at `path` (read from `stream`, an open binary stream, if given).

    `header`: delimited text starts with a header row (named formats always name their columns).
    `quoting`: auto | csv | literal, for delimited text. Rows that cannot be read at all (not
    UTF-8, broken quoting, not JSON) raise DataError, or go to `on_bad_row` and are left out.
    `columns`: names a JSON-lines file is read for, besides the keys of its first object.
    `reads`: which columns of a named format the caller reads (None: all); the others come as
    None, unconverted, so a list or a timestamp in a column no task uses is no error."""
    name = str(path)
    kind = file_format(path)
    if quoting not in ("auto", *QUOTINGS):
        raise UserError(f"quoting {quoting!r} is not one of auto, csv, literal")
    if kind == "parquet":
        return _parquet(name, on_bad_row, reads)
    stream = stream if stream is not None else open_binary(path)
    lines = lines or _LineCounter(stream, name)
    if kind == "jsonl":
        return Table(name, kind, *_jsonl(name, lines, on_bad_row, columns, reads))
    note = None
    if quoting == "auto":
        quoting, note = ("csv", None) if name == "-" or not header else detect_quoting(name, DELIMITERS[kind])
    rows = iter_rows(stream, name, on_bad_line=on_bad_row, lines=lines, delimiter=DELIMITERS[kind], quoting=quoting)
    if not header:
        return Table(name, kind, None, rows, note)
    first = next(rows, None)
    if first is None:
        raise DataError(name, None, "file is empty; expected a header row and data rows")
    return Table(name, kind, [h.strip() for h in first[1]], rows, note)


# ---------------------------------------------------------------- quotes: CSV quoting, or text

def detect_quoting(path: str, delimiter: str) -> tuple[str, str | None]:
    """How the file's quotes read: ('csv', None) if every row then has the header's number of
    fields, else ('literal', the one-line note) if every row then has it. Rows that misfit the
    same way under both readings (the same lines, the same problems) are no matter of quotes:
    CSV quoting then, and those rows are reported as bad rows when read. Otherwise an error says where each reading fails and which
    key forces one."""
    as_csv = _misfits(path, delimiter, "csv")
    if not as_csv:
        return "csv", None
    as_text = _misfits(path, delimiter, "literal")
    if not as_text:
        line, problem = as_csv[0]
        return "literal", (f"{path}: read quotes as literal text (with CSV quoting, line {line}: {problem}); "
                           f"set quoting = \"csv\" to refuse this")
    if as_csv == as_text:  # the same rows misfit the same way: the rows are wrong, not the quotes
        return "csv", None
    (csv_line, csv_problem), (text_line, text_problem) = as_csv[0], as_text[0]
    raise DataError(path, csv_line, f"fits neither reading of quotes: as CSV quoting, {csv_problem}; as literal "
                                    f"text, line {text_line}: {text_problem}: set quoting = \"csv\" or \"literal\" "
                                    f"(task file key, or score --quoting) to read it one way and see each bad row")


def _misfits(path: str, delimiter: str, quoting: str, limit: int = 1000) -> list[tuple[int, str]]:
    """(line, problem) of the rows that do not fit the header under `quoting` (the first `limit`)."""
    found: list[tuple[int, str]] = []
    problems: list[DataError] = []
    with open_binary(path) as stream:
        rows = iter_rows(stream, path, on_bad_line=problems.append, delimiter=delimiter, quoting=quoting)
        width = None
        for line, fields in rows:
            found += [(p.line, p.problem) for p in problems if "UTF-8" not in p.problem]  # not UTF-8: no matter of quotes
            problems.clear()
            if width is None:
                width = len(fields)
            elif len(fields) != width:
                found.append((line, f"{len(fields)} fields where the header has {width}"))
            if len(found) >= limit:
                break
    found += [(p.line, p.problem) for p in problems if "UTF-8" not in p.problem]
    return found[:limit]


# ---------------------------------------------------------------- JSON lines

def _jsonl(name: str, lines: _LineCounter, on_bad_row, columns, reads) -> tuple[list[str], Iterator]:
    first_bad: list[DataError] = []   # what a file whose every line is bad says (not "file is empty")

    def bad_line(error: DataError) -> None:
        if not first_bad:
            first_bad.append(error)
        if on_bad_row is None:
            raise error
        on_bad_row(error)

    objects = _json_objects(name, lines, bad_line)
    first = next(objects, None)
    if first is None:
        raise first_bad[0] if first_bad else DataError(name, None, "file is empty; expected one JSON object per line")
    header = list(dict.fromkeys([*first[1], *columns]))
    read = [reads is None or reads(key) for key in header]

    def rows():
        for number, obj in itertools.chain([first], objects):
            try:
                yield number, _cells(obj, header, read)
            except ValueError as e:
                error = DataError(name, number, str(e))
                if on_bad_row is None:
                    raise error from None
                on_bad_row(error)

    return header, rows()


def _cells(record: dict, header: list[str], read: list[bool]) -> list[str | None]:
    """The values of `record` under `header` as text (None for columns not read); a value that
    is no text or number is a ValueError naming its column."""
    values = []
    for key, wanted in zip(header, read):
        try:
            values.append(cell(record.get(key)) if wanted else None)
        except ValueError as e:
            raise ValueError(f"column {excerpt(key)}: {e}") from None
    return values


def _json_objects(name: str, lines: _LineCounter, bad_line) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each JSON object line; any other non-blank line to `bad_line`."""
    for text in lines:
        if not text.strip():
            continue
        try:
            obj = parse_json(text)
            if not isinstance(obj, dict):
                raise ValueError(f"a JSON {type(obj).__name__}, not an object")
        except ValueError as e:
            bad_line(DataError(name, lines.count, f"not a JSON object ({str(e).splitlines()[0][:120]})"))
            continue
        yield lines.count, obj


SURROGATE = re.compile("[\ud800-\udfff]")


def not_unicode(text: str) -> str | None:
    """What makes `text` no Unicode text (None if it is one): JSON may escape a lone UTF-16
    surrogate ("\\ud800"), which no UTF-8 encoder, tokenizer or terminal takes."""
    found = SURROGATE.search(text)
    if found is None:
        return None
    return f"not valid Unicode text (a lone surrogate, U+{ord(found.group()):04X}, at character {found.start()}); " \
           f"send text that encodes as UTF-8"


def cell(value) -> str | None:
    """A value of a named format as the text mtcli reads (labels and texts alike): strings as
    they are, whole numbers without a decimal point, booleans as 1 and 0, null as None."""
    if isinstance(value, str):
        problem = not_unicode(value)
        if problem:
            raise ValueError(problem)
        return value
    if value is None:
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    raise ValueError(f"a {type(value).__name__} where text or a number belongs")


# ---------------------------------------------------------------- Parquet

def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError('reading and writing Parquet needs pyarrow: pip install "mtcli[parquet]"') from None
    return pq


def _parquet(name: str, on_bad_row, reads) -> Table:
    pq = _pyarrow_parquet()
    check_regular(name, "data file")
    try:
        source = pq.ParquetFile(name)
    except FileNotFoundError:
        raise UserError(f"{name}: file not found") from None
    except Exception as e:  # pyarrow's own error types for files that are not Parquet
        raise DataError(name, None, f"cannot be read as Parquet ({str(e).splitlines()[0][:160]})") from None
    header = list(source.schema_arrow.names)
    read = [reads is None or reads(key) for key in header]
    wanted = [key for key, r in zip(header, read) if r]

    def rows():
        number = 0
        for batch in source.iter_batches(batch_size=PARQUET_BATCH, columns=wanted):
            for record in batch.to_pylist():
                number += 1
                try:
                    yield number, _cells(record, header, read)
                except ValueError as e:
                    error = DataError(name, number, str(e), unit="row")
                    if on_bad_row is None:
                        raise error from None
                    on_bad_row(error)

    return Table(name, "parquet", header, rows(), row_unit="row")


class ParquetRowWriter:
    """Rows streamed into one Parquet file, PARQUET_BATCH at a time: `types` per column,
    'string', 'int' or 'double'. A context manager; `write(rows)` takes lists of values."""

    def __init__(self, path, header: list[str], types: list[str], metadata: dict[str, str] | None = None):
        import pyarrow as pa

        pq = _pyarrow_parquet()
        kinds = {"string": pa.string(), "int": pa.int64(), "double": pa.float64()}
        self.header = header
        self.schema = pa.schema([(name, kinds[kind]) for name, kind in zip(header, types)], metadata=metadata)
        self.writer = pq.ParquetWriter(str(path), self.schema)
        self.pending: list[list] = []

    def write(self, rows) -> None:
        self.pending.extend(rows)
        if len(self.pending) >= PARQUET_BATCH:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            columns = list(zip(*self.pending))
            self.writer.write_table(pa.Table.from_arrays([pa.array(c, type=t) for c, t in zip(columns, self.schema.types)],
                                                         schema=self.schema))
            self.pending = []

    def __enter__(self):
        return self

    def __exit__(self, kind, value, trace):
        if kind is None:
            self._flush()
        self.writer.close()
