"""Streaming reader for tab-separated files (CS224N data and `score` input).

Rows come with the line number they start on, so every error can name file and
line. Bytes are decoded one line at a time: a non-UTF-8 line is reported where
it is, not somewhere inside a buffer. Torch-free.
"""

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mtcli.errors import DataError, UserError

csv.field_size_limit(2**31 - 1)  # over-long texts are truncated by the tokenizer, not refused here


class _LineCounter:
    """Iterates decoded lines of a binary stream and remembers how many it gave out."""

    def __init__(self, stream: BinaryIO, name: str):
        self.stream, self.name, self.count = stream, name, 0

    def __iter__(self):
        for raw in self.stream:
            self.count += 1
            if self.count == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # UTF-8 byte-order mark
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(self.name, self.count, f"not valid UTF-8 (byte {e.start}); save the file as UTF-8") from None


def open_binary(path: str | Path) -> BinaryIO:
    """Open a file (or '-' for stdin) for reading bytes; a clear error if it is missing."""
    if str(path) == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a TSV file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None


def iter_rows(stream: BinaryIO, name: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number where the row starts, fields) for each non-blank row."""
    lines = _LineCounter(stream, name)
    reader = csv.reader(lines, delimiter="\t")
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(name, lines.count, f"malformed row ({e})") from None
        if row and any(field.strip() for field in row):
            yield start, row
        start = lines.count + 1
