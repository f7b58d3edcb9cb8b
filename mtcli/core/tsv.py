"""Streaming reader and writer of delimited text (TSV, CSV): the rows of a file with the line
number each starts on, so every error can name file and line. Bytes are decoded one line
at a time: a non-UTF-8 line is reported where it is, not somewhere inside a buffer.

Quotes are read one of two ways: as CSV quoting (`"a<TAB>b"` is one field, `""` a quote;
CS224N's files), or as literal text (a field is whatever lies between tabs; MSRP, GLUE,
SICK). mtcli.core.readers decides which a file needs. Torch-free.
"""

import csv
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from mtcli.core.errors import DataError
from mtcli.core.fileio import open_to_read

csv.field_size_limit(2**31 - 1)  # over-long texts are truncated by the tokenizer, not refused here


class _LineCounter:
    """Iterates decoded lines of a binary stream; counts lines and bytes given out.

    A line that is not UTF-8 raises DataError, or, with `on_bad_line`, is reported
    to it and left out."""

    def __init__(self, stream: BinaryIO, name: str, on_bad_line=None):
        self.stream, self.name, self.on_bad_line = stream, name, on_bad_line
        self.count = self.bytes = 0

    def __iter__(self):
        for raw in self.stream:
            self.count += 1
            self.bytes += len(raw)
            if self.count == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # UTF-8 byte-order mark
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                error = DataError(self.name, self.count, f"not valid UTF-8 (byte {e.start}); save the file as UTF-8")
                if self.on_bad_line is None:
                    raise error from None
                self.on_bad_line(error)


def open_binary(path: str | Path) -> BinaryIO:
    """Open a file (or '-' for stdin) for reading bytes; a clear error if it is missing."""
    if str(path) == "-":
        return sys.stdin.buffer
    return open_to_read(path)


QUOTINGS = ("csv", "literal")


def iter_rows(stream: BinaryIO, name: str, on_bad_line=None, lines: _LineCounter | None = None, delimiter: str = "\t",
              quoting: str = "csv") -> Iterator[tuple[int, list[str]]]:
    """Yield (line number where the row starts, fields) for each non-blank row; quotes read as
    CSV quoting or as literal text (`quoting`).

    Undecodable or malformed lines raise DataError, or go to `on_bad_line` and are skipped."""
    lines = lines or _LineCounter(stream, name)
    lines.on_bad_line = on_bad_line
    if quoting == "literal":
        reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE, quotechar=None, strict=True)
    else:  # broken quoting is an error, not one huge field
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            error = DataError(name, lines.count, f"malformed row ({str(e).replace(chr(9), '<TAB>')})")
            if on_bad_line is None:
                raise error from None
            on_bad_line(error)
            start = lines.count + 1
            continue
        if row and any(field.strip() for field in row):
            yield start, row
        start = lines.count + 1


class TsvWriter:
    """Rows out as tab-separated text that `iter_rows` (or any csv reader with a tab
    delimiter) reads back to the same fields: csv's minimal quoting for tabs, quotes and
    newlines. csv does not quote a lone carriage return when lines end in '\n', and a
    reader then splits the row there, so a row holding one is written fully quoted."""

    def __init__(self, stream: TextIO, delimiter: str = "\t"):
        self.minimal = csv.writer(stream, delimiter=delimiter, lineterminator="\n")
        self.quoted = csv.writer(stream, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, fields: Sequence[str]) -> None:
        (self.quoted if any("\r" in f for f in fields) else self.minimal).writerow(fields)

    def writerows(self, rows: Iterable[Sequence[str]]) -> None:
        for fields in rows:
            self.writerow(fields)


def sniff_delimiter(path: str | Path) -> str:
    """Tab if the header line holds one, else comma: data files are TSV or CSV with a header."""
    with open_binary(path) as stream:
        return "\t" if b"\t" in stream.readline() else ","


def line_counter(stream: BinaryIO, name: str) -> _LineCounter:
    """A counter to pass to iter_rows when the caller wants to watch bytes read (progress)."""
    return _LineCounter(stream, name)
