"""A run folder, runs/<name>/, as one format: the names of its files, how its records are read,
and which of a run's options say what it trained. Every module that reads or writes a run's
files names them from here. Torch-free.

    runs/<name>/
      config.json                  every option of the run (TrainConfig.to_dict)
      recipe.toml                  the options as a recipe: what `mtcli train --config` trains again
      data.json                    each data file read, with its sha256 (run/provenance.py)
      metrics.jsonl                one record per logged step, evaluation and epoch (run/metrics_log.py)
      eval.json                    the best epoch's dev evaluation (eval/evaluate.py)
      dev-predictions.safetensors  that epoch's dev predictions, what compare resamples (run/predictions.py)
      report.json, *.png           what `mtcli report` and the evaluation draw
      tracking.json                the MLflow run's id (train/tracking.py)
      teacher-labels.safetensors   a distilled run's teacher predictions (run/teacher_labels.py)
      best/, last/                 checkpoints (model/checkpoint.py)

What a run is: its options fall in three groups. WHERE it went (name, out) and HOW it computed,
saved and reported (device, batch size of evaluation, logging, checkpoints, ...) are not what
it trained; the seed is what makes two runs of one recipe differ. `recipe_key` is what compare
groups runs by; `differences` is what makes a saved configuration another run than a wanted one
(resume, a sweep's continued trial), where the options that may change on resume are let go.
"""

from __future__ import annotations

import json
from pathlib import Path

from mtcli.core.fileio import read_json_dict

CONFIG = "config.json"
RECIPE = "recipe.toml"
RECORD = "data.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
PREDICTIONS = "dev-predictions.safetensors"
REPORT = "report.json"
TRACKING = "tracking.json"
TEACHER_LABELS = "teacher-labels.safetensors"
BEST, LAST = "best", "last"
SET_ASIDE = "stopped"   # a sweep's trials/stopped/: run folders a resume could not continue (compare skips them)

WHERE = ("name", "out")
HOW = ("device", "eval_batch_size", "log_every", "progress_every", "save_every", "eval_every", "log_to",
       "skip_nonfinite", "activation_checkpointing")
CHANGEABLE_ON_RESUME = ("activation_checkpointing", "save_every")   # how a run computes and saves: may change
DERIVED = ("learning_rate",)   # written to config.json for its readers: not an option
NOT_THE_RECIPE = (*WHERE, *HOW, *DERIVED, "seed")


def is_run_dir(folder: str | Path) -> bool:
    """A folder `mtcli train` wrote: its config.json next to metrics.jsonl or a checkpoint."""
    folder = Path(folder)
    return (folder / CONFIG).is_file() and any((folder / n).exists() for n in (METRICS, BEST, LAST))


def enclosing_run_dir(path: str | Path) -> Path | None:
    """The run folder that is `path` or holds it, if any."""
    path = Path(path).resolve()
    return next((p for p in (path, *path.parents) if is_run_dir(p)), None)


def read_config(run_dir: str | Path) -> dict | None:
    """The run's config.json as data (None: missing, or not a JSON object); validated by
    TrainConfig.from_saved where a run is continued."""
    return read_json_dict(Path(run_dir) / CONFIG)


def read_eval(run_dir: str | Path) -> dict | None:
    """The run's eval.json as data (None: missing, or not a JSON object)."""
    return read_json_dict(Path(run_dir) / EVAL)


def recipe_key(config: dict) -> str:
    """What runs of one recipe share: every option but where the run went, how it computed and
    reported, and its seed (as canonical JSON: two runs are one recipe when their keys are equal)."""
    return json.dumps({k: v for k, v in sorted(config.items()) if k not in NOT_THE_RECIPE}, sort_keys=True)


def differences(saved: dict, wanted: dict, *, let_go=(*WHERE, *CHANGEABLE_ON_RESUME, *DERIVED),
                among=None) -> list[str]:
    """The options in which a saved configuration is another run than the wanted one, sorted;
    empty: the same run. By default where the run went and what may change on resume aside;
    `let_go`: the options that do not count; `among`: only these options count (default: all
    either configuration has)."""
    keys = (set(saved) | set(wanted) if among is None else set(among)) - set(let_go)
    return sorted(k for k in keys if saved.get(k) != wanted.get(k))
