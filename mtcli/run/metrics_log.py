"""metrics.jsonl: one JSON object per line, appended and flushed as training goes.

A kill or a full disk during an append can leave the last line torn (cut short). Readers
ignore a torn last line and say so (`read_metrics`); `train --resume` also cuts it off
the file. Any other line that is not a record of the shape below is damage, not a torn
write: one error naming the file and line. A run folder may come from someone else, so
every field a reader uses is checked here, once.
"""

import json
from collections.abc import Callable
from pathlib import Path

from mtcli.core.errors import DataError
from mtcli.core.fileio import check_regular, open_append, parse_json


class MetricsLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fh = open_append(self.path)

    def write(self, kind: str, **values) -> None:
        self._fh.write(json.dumps({"type": kind, **values}, default=_plain) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class NullLog:
    """What ranks other than 0 write: nothing."""

    def write(self, kind: str, **values) -> None:
        pass

    def close(self) -> None:
        pass


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to metrics.jsonl")


def read_metrics(path: str | Path, on_torn: Callable[[str], None] | None = None) -> list[dict]:
    """The records of a metrics.jsonl. A torn last line is left out and reported to `on_torn`
    (one line of text); any other bad line is a DataError naming the file and line."""
    records, torn = read_records(path)
    if torn is not None and on_torn is not None:
        on_torn(f"{path}:{torn}: last line is torn (a write was cut short, e.g. by a kill or a full disk); "
                f"it is ignored")
    return records


def read_records(path: str | Path) -> tuple[list[dict], int | None]:
    """(records, the line number of a torn last line or None)."""
    check_regular(path, "metrics log")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(path, None, f"cannot be read ({e.strerror})") from None
    lines = data.split(b"\n")
    records, torn = [], None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = parse_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            if all(not rest.strip() for rest in lines[number:]):  # nothing after it: a torn final write
                torn = number
                break
            raise DataError(path, number, "not a JSON record: the log is damaged (not a cut-short last line); "
                                          "restore it from a copy") from None
        problem = _record_problem(record)
        if problem:
            raise DataError(path, number, f"{problem}: the log was edited or damaged; restore it from a copy")
        records.append(record)
    return records, torn


def last_stop(records: list[dict]) -> dict | None:
    """{"step", "reason"} of the log's last stopped record (on_eval, a sweep's pruner, ended the
    run), or None. read_metrics checked both fields."""
    stops = [{"step": r["step"], "reason": r["reason"]} for r in records if r["type"] == "stopped"]
    return stops[-1] if stops else None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(value) -> bool:
    """A dict of name -> number (None allowed: a metric that could not be computed)."""
    return isinstance(value, dict) and all(isinstance(k, str) and (v is None or _number(v)) for k, v in value.items())


def _record_problem(record) -> str | None:
    """What is wrong with a record's shape, or None. Checks the fields readers use."""
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        return "not a record (an object with a 'type')"
    kind = record["type"]
    if "step" in record and (not isinstance(record["step"], int) or isinstance(record["step"], bool)
                             or record["step"] < 0):
        return "'step' is not a whole number >= 0"
    if kind == "step":
        if "step" not in record or not _numbers(record.get("loss")) or not _number(record.get("epoch_progress")):
            return "a step record needs step, epoch_progress and loss"
        for key in ("grad_cosine", "weights"):
            if key in record and not _numbers(record[key]):
                return f"'{key}' is not a map of numbers"
        if "/" in "".join(k for k in record.get("weights", {})) or \
                any(k.count("/") != 1 for k in record.get("grad_cosine", {})):
            return "'grad_cosine' keys are task pairs 'a/b'"
    elif kind == "epoch":
        if not isinstance(record.get("epoch"), int) or "step" not in record:
            return "an epoch record needs epoch and step"
        if not _numbers(record.get("train_loss", {})) or not _numbers(record.get("headline", {})):
            return "'train_loss' and 'headline' are maps of numbers"
        dev = record.get("dev")
        if not isinstance(dev, dict) or not all(isinstance(m, dict) and _numbers(m) for m in dev.values()):
            return "'dev' is not a map of task -> metrics"
        overall = record.get("overall")
        if overall is not None and not _number(overall):
            return "'overall' is not a number"
    elif kind == "eval":   # a dev evaluation between epoch ends (--eval-every)
        if "step" not in record or not _numbers(record.get("headline")):
            return "an eval record needs step and headline"
        if record.get("overall") is not None and not _number(record["overall"]):
            return "'overall' is not a number"
    elif kind == "stopped":   # on_eval (a sweep's pruner) stopped the run
        if "step" not in record or not isinstance(record.get("reason"), str):
            return "a stopped record needs step and reason"
    return None
