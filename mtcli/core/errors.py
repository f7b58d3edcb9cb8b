"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input, missing file, wrong checkpoint: the message says what to do."""

    exit_code = 2


class DataError(UserError):
    """A data file that cannot be read; the message names file and line (`path:12: ...`), or
    file and row for formats without lines (`path: row 12: ...`, Parquet)."""

    def __init__(self, path, line: int | None, problem: str, unit: str = "line"):
        self.path, self.line, self.problem, self.unit = str(path), line, problem, unit
        where = str(path) if line is None else f"{path}:{line}" if unit == "line" else f"{path}: {unit} {line}"
        super().__init__(f"{where}: {problem}")


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or a SIGTERM: the command stops, removes what it was writing, and the CLI
    says so in one line and exits 128 + the signal's number. A BaseException (as
    KeyboardInterrupt is), so that no `except Exception` swallows it. `note` says what was
    kept (training: where its last/ checkpoint is and how to continue)."""

    def __init__(self, signum: int, note: str = ""):
        super().__init__(signum, note)
        self.signum, self.note = signum, note

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        import signal

        what = "interrupted" if self.signum == signal.SIGINT else "terminated"
        return f"{what}; {self.note}" if self.note else what


def cut(text: str, limit: int = 80) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis where it was cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def excerpt(value, limit: int = 80) -> str:
    """A value from a file as an error may quote it: its repr (every control, format or
    non-printable character escaped), cut to at most `limit` characters."""
    return cut(repr(value), limit)
