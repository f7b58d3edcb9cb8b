"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input, missing file, wrong checkpoint: the message says what to do."""

    exit_code = 2


class DataError(UserError):
    """A data or TSV file that cannot be read; the message names file and line."""

    def __init__(self, path, line: int | None, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
