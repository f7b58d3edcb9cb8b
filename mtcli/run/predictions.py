"""A run's best dev predictions, kept so that runs can be compared example by example (`mtcli
compare`'s paired bootstrap): `dev-predictions.safetensors` in the run folder, per task one array
of predictions (as the metrics take them: class probabilities, P(positive) or scores) and one of
gold labels, with the tasks' declarations and the epoch in its metadata. safetensors holds plain
arrays: nothing in it is executed or unpickled, and every field is checked on reading, since a
run folder may come from anyone. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from mtcli.core.data import Split
from mtcli.core.errors import UserError
from mtcli.core.fileio import atomic_path, parse_json, read_arrays
from mtcli.core.tasks import Task, tasks_from_dicts
from mtcli.run.folder import PREDICTIONS as FILE
FORMAT = "mtcli-dev-predictions/1"


@dataclass
class DevPredictions:
    tasks: dict[str, Task]
    predictions: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    epoch: int


def write_dev_predictions(run_dir: str | Path, splits: dict[str, Split], predictions: dict[str, np.ndarray],
                          epoch: int) -> Path:
    names = list(predictions)
    arrays = {}
    for i, name in enumerate(names):
        task = splits[name].task
        arrays[f"predictions:{i}"] = np.ascontiguousarray(predictions[name], dtype=np.float32)
        arrays[f"labels:{i}"] = np.asarray(splits[name].labels, dtype=np.float64 if task.is_regression else np.int64)
    metadata = {"format": FORMAT, "epoch": str(int(epoch)),
                "tasks": json.dumps([splits[name].task.declaration() for name in names])}
    path = Path(run_dir) / FILE
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=metadata)
    return path


def read_dev_predictions(path: str | Path) -> DevPredictions:
    """The predictions file of a run folder, every field checked (UserError naming the file)."""
    path = Path(path)

    def damaged(what: str):
        raise UserError(f"{path}: {what}; the file is damaged or not mtcli's: train the run again")

    try:
        metadata, arrays = read_arrays(path, "predictions file", damaged)
    except FileNotFoundError:
        raise UserError(f"{path}: not found; runs keep their dev predictions since mtcli 0.1 (train the run "
                        f"again to compare it example by example)") from None
    if metadata.get("format") != FORMAT:
        damaged(f"format {metadata.get('format')!r}, expected {FORMAT!r}")
    try:
        tables = parse_json(metadata["tasks"])
        epoch = int(metadata["epoch"])
    except (KeyError, ValueError, TypeError):
        damaged("its tasks or epoch cannot be read")
    if not isinstance(tables, list):
        damaged("its tasks are not a list")
    tasks = tasks_from_dicts(tables, path)
    predictions, labels = {}, {}
    for i, (name, task) in enumerate(tasks.items()):
        p, y = arrays.get(f"predictions:{i}"), arrays.get(f"labels:{i}")
        if p is None or y is None:
            damaged(f"task {name!r} has no predictions or labels")
        width = len(task.labels) if task.kind == "multiclass" else None
        if y.ndim != 1 or p.shape != ((len(y), width) if width else (len(y),)) or len(y) == 0:
            damaged(f"task {name!r}: predictions {p.shape} do not fit {len(y)} labels of a {task.kind} task")
        if not np.isfinite(p).all() or not np.isfinite(y).all():
            damaged(f"task {name!r}: values that are not finite")
        if not task.is_regression and ((y < 0).any() or (y >= (width or 2)).any()):
            damaged(f"task {name!r}: labels outside its {width or 2} classes")
        predictions[name], labels[name] = p.astype(np.float64), y
    return DevPredictions(tasks, predictions, labels, epoch)
