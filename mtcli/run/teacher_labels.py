"""A distilled run's teacher predictions, `teacher-labels.safetensors` in the run folder: per
taught task the teacher's predictions of every training row of the task's unit (class
probabilities, P(positive) or a score in the task's range), and with --distill-embeddings the
teacher's embedding of each text (float16), each entry under the digests of its teacher and of
the rows it labelled (what resume and a sibling run check before reusing them); the arrays'
own digest is kept in the run's record (data.json, run/provenance.py), and labels that no
longer match it are never reused. Plain arrays:
nothing in it is executed or unpickled, and every field is checked on reading, since a run
folder may come from anyone. Torch-free; the labelling itself is mtcli.train.teacher's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtcli.core.errors import UserError, excerpt
from mtcli.core.fileio import atomic_path, parse_json, read_arrays
from mtcli.core.tasks import Task

FORMAT = "mtcli-teacher-labels/1"


def check_predictions(task: Task, values: np.ndarray, rows: int, where: str) -> np.ndarray:
    """A teacher's predictions for `rows` rows of `task`, as the task's users see them: class
    probabilities (rows, C), P(positive) or a score in the range (rows,); finite."""
    shape = (rows, len(task.labels)) if task.kind == "multiclass" else (rows,)
    values = np.asarray(values)
    if values.shape != shape or not np.issubdtype(values.dtype, np.floating) or not np.isfinite(values).all():
        raise UserError(f"{where}: task {task.name!r}: the teacher's predictions are not {shape[0]} finite "
                        f"{'distributions' if len(shape) == 2 else 'numbers'} (shape {values.shape}); the file is "
                        f"damaged or not mtcli's")
    low, high = task.range if task.is_regression else (0.0, 1.0)
    slack = 1e-4 * max(1.0, high - low)
    if values.min(initial=low) < low - slack or values.max(initial=high) > high + slack:
        raise UserError(f"{where}: task {task.name!r}: the teacher's predictions leave [{low:g}, {high:g}]; the file "
                        f"is damaged or not mtcli's")
    if task.kind == "multiclass" and not np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
        raise UserError(f"{where}: task {task.name!r}: the teacher's class probabilities do not sum to 1; the file "
                        f"is damaged or not mtcli's")
    return values.astype(np.float32)


@dataclass
class Labels:
    """One task's teacher predictions, and what they were computed from."""
    teacher: str        # the teacher's digest
    rows: str           # the rows' digest
    source: str         # the teacher's folder, as given
    values: np.ndarray
    embeddings: np.ndarray | None = None   # (rows, texts, width): the teacher's embedding of each text (--distill-embeddings)

    @property
    def sha256(self) -> str:
        """The digest of the arrays as the file stores them (float32 predictions, float16
        embeddings): what the run's record (data.json) keeps beside the file, so that labels
        edited after they were written are never trained on."""
        digest = hashlib.sha256(np.ascontiguousarray(self.values, dtype=np.float32).tobytes())
        if self.embeddings is not None:
            digest.update(b"embeddings\0" + np.ascontiguousarray(self.embeddings, dtype=np.float16).tobytes())
        return digest.hexdigest()


def as_stored(embeddings: np.ndarray) -> np.ndarray:
    """Embeddings as the labels file keeps them (float16, half the bytes), back in float32: a run
    trains on what a resume reads back."""
    return np.asarray(embeddings, dtype=np.float32).astype(np.float16).astype(np.float32)


def read_labels(path: Path, tasks: dict[str, Task], accept=None) -> dict[str, Labels]:
    """A teacher-labels file's entries for `tasks` (by name), each checked against its task;
    UserError if the file is damaged. `accept(name, entry)`: whether an entry is wanted, from
    its header alone (teacher, rows, source, count, embeddings: whether it holds them); only
    the wanted entries' arrays are read (another run's file may hold many)."""
    def damaged(what: str):
        raise UserError(f"{path}: {what}; the file is damaged or not mtcli's: move it away to label again")

    entries: dict = {}

    def select(metadata: dict, names: list[str]) -> list[str]:
        if metadata.get("format") != FORMAT:
            damaged(f"format {excerpt(metadata.get('format'))}, expected {FORMAT!r}")
        try:
            found = parse_json(metadata.get("entries", ""))
        except ValueError as e:
            damaged(f"its entries cannot be read ({str(e)[:120]})")
        if not isinstance(found, dict):
            damaged("its entries are not an object")
        for name, entry in found.items():
            if name not in tasks:
                continue
            if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("teacher", "rows", "source"))
                    and isinstance(entry.get("count"), int) and name in names):
                damaged(f"entry {excerpt(name)}")
            if accept is None or accept(name, {**entry, "embeddings": f"embed:{name}" in names}):
                entries[name] = entry
        return [array for name in entries for array in (name, f"embed:{name}")]

    _, arrays = read_arrays(path, "teacher labels", damaged, select)
    found = {}
    for name, entry in entries.items():
        values = check_predictions(tasks[name], arrays[name], entry["count"], str(path))
        embeddings = arrays.get(f"embed:{name}")
        if embeddings is not None:
            if embeddings.ndim != 3 or embeddings.shape[:2] != (entry["count"], len(tasks[name].text)) \
                    or not np.isfinite(embeddings).all():
                damaged(f"task {name!r}: its teacher embeddings are not one finite vector per text")
            embeddings = embeddings.astype(np.float32)
        found[name] = Labels(entry["teacher"], entry["rows"], entry["source"], values, embeddings)
    return found


def write_labels(path: Path, labels: dict[str, Labels]) -> Path:
    from safetensors.numpy import save_file

    entries = {name: {"teacher": l.teacher, "rows": l.rows, "source": l.source, "count": len(l.values)}
               for name, l in labels.items()}
    arrays = {name: np.ascontiguousarray(l.values) for name, l in labels.items()}
    arrays.update({f"embed:{name}": l.embeddings.astype(np.float16) for name, l in labels.items()
                   if l.embeddings is not None})
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={"format": FORMAT, "entries": json.dumps(entries)})
    return path
