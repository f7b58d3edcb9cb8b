"""metrics.jsonl: one JSON object per line, appended and flushed as training goes."""

import json
from pathlib import Path


class MetricsLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fh = open(self.path, "a", encoding="utf-8")

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


def read_metrics(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
