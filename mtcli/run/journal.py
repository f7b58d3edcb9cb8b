"""A sweep's study.journal: Optuna's journal storage (JSON lines, one operation a line), opened
for the sweep (`open_journal`) and for compare's importances (`load_study`), after the file is
checked as data anyone may have edited. Torch-free.

A torn last line (a write a kill cut short) is what Optuna itself skips; before a sweep appends
to the journal it is cut off (as metrics.jsonl's is), else the next record would be glued to it.
Any other line that is not an operation record (not JSON, not an object, an unknown op_code) is
one error naming file and line: the journal was damaged or edited.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from mtcli.core.errors import UserError, excerpt
from mtcli.core.fileio import check_regular

FILE = "study.journal"
STUDY = "sweep"   # the study's name in the journal
OPERATIONS = range(11)   # Optuna's JournalOperation codes: CREATE_STUDY (0) ... DISCARD_TRIALS (10)


def optuna_module():
    try:
        import optuna
    except ImportError:
        raise UserError("mtcli sweep needs Optuna: pip install 'mtcli[sweep]'") from None
    # ERROR: a failed trial is one line of mtcli's, not Optuna's warning with its traceback
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def check_journal(path: Path, *, repair: bool = False, on_repair: Callable[[str], None] | None = None) -> None:
    """Every complete line of the journal an operation record; a torn last line cut off when
    `repair` (said to `on_repair`), else left for Optuna to skip. One UserError otherwise."""
    check_regular(path, "sweep journal")
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    for number, raw in enumerate(lines[:-1], start=1):
        problem = _record_problem(raw)
        if problem:
            raise UserError(f"{path}:{number}: {problem}; the journal was edited or damaged: restore it from a copy, "
                            f"or start the sweep again under another --name")
    torn = lines[-1]
    if torn.strip() and repair:
        with open(path, "r+b") as fh:
            fh.truncate(len(data) - len(torn))
            os.fsync(fh.fileno())
        if on_repair is not None:
            on_repair(f"{path}: cut a torn last line ({len(torn)} bytes, a write a kill cut short)")


def _record_problem(raw: bytes) -> str | None:
    if not raw.strip():
        return "an empty line"
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "not a JSON record"
    if not isinstance(record, dict):
        return "not a JSON object"
    op = record.get("op_code")
    if isinstance(op, bool) or not isinstance(op, int) or op not in OPERATIONS:
        return f"op_code {excerpt(op)} is no operation of Optuna's journal"
    return None


def open_journal(folder: Path, *, repair: bool = False, on_repair=None):
    """The sweep's Optuna storage, the journal checked first (see check_journal)."""
    optuna_module()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(folder) / FILE
    if path.is_symlink():
        raise UserError(f"{path}: is a link, and a sweep appends to its own journal, never through links: remove the "
                        f"link, or start the sweep under another --name")
    if path.exists():
        check_journal(path, repair=repair, on_repair=on_repair)
    return JournalStorage(JournalFileBackend(str(path)))


def load_study(folder: Path, *, repair: bool = False, on_repair=None, **options):
    """The sweep's study from its journal; one UserError if the operations do not replay (an
    edited journal whose lines each look right)."""
    optuna = optuna_module()
    storage = open_journal(folder, repair=repair, on_repair=on_repair)
    try:
        return optuna.load_study(study_name=STUDY, storage=storage, **options)
    except KeyError:
        raise
    except Exception as e:   # Optuna's replay raises what it meets: ValueError, TypeError, IndexError, ...
        raise UserError(f"{Path(folder) / FILE}: cannot be read as a sweep's study "
                        f"({type(e).__name__}: {excerpt(str(e), 120)}); the sweep folder is damaged") from None
