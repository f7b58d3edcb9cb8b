"""Continuing a run (`mtcli train --resume`): its folder read back and checked as data anyone may
have edited (config.json against the data record and against the configuration last/ was saved
with, the data files against their digests, last/'s training state), then the Trainer rebuilt
at the position its last checkpoint saved, its optimizer, schedule, weighting and RNG states
restored, and metrics.jsonl cut back to that step: the continued run is bit-identical (on CPU)
to one that was never interrupted. A run killed before any checkpoint starts again from step 0
in its folder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rich.console import Console

from mtcli.core.errors import UserError
from mtcli.core.fileio import read_json_object, recover_dir, write_json, write_text
from mtcli.core.tasks import REQUIRED_SPLITS
from mtcli.model.checkpoint import META, TRAINER_STATE, model_state_from, read_meta
from mtcli.run.folder import CHANGEABLE_ON_RESUME, CONFIG, LAST, METRICS, RECORD, differences
from mtcli.run.metrics_log import read_metrics
from mtcli.run.provenance import check_sources, read_record
from mtcli.train.config import PATH_FIELDS, TrainConfig
from mtcli.train.recipe import write_recipe
from mtcli.train.state import position_from, read_trainer_state, set_rng_state


def resumed(cls, run_dir: str | Path, console: Console | None = None, on_eval=None, settings: dict | None = None):
    """Rebuild a run from runs/<name>/config.json and continue from its last/ checkpoint
    (`on_eval` as for a new run: called for the evaluations still to come). `settings`: new
    values of CHANGEABLE_ON_RESUME (how the run computes and saves: activation checkpointing,
    --save-every), which config.json then records.

    Everything read from the run folder is checked before it is used: the configuration
    (types, values, and that it is the one last/ was saved with), the data (the files the
    run recorded, unchanged), the state (plain data only, state.py). A run that stopped
    before saving any checkpoint starts again from step 0 in its folder."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG
    if not config_path.is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.json); pass the folder `mtcli train` wrote")
    saved = read_json_object(config_path, "run record", "it was edited or damaged: restore it, or start a new run")
    config = TrainConfig.from_saved(saved, config_path)
    changed = {k: v for k, v in (settings or {}).items() if getattr(config, k) != v}
    if set(changed) - set(CHANGEABLE_ON_RESUME):
        raise ValueError(f"only {', '.join(CHANGEABLE_ON_RESUME)} may change on resume, not {', '.join(changed)}")
    if changed:
        config = dataclasses.replace(config, **changed)
    record = read_record(run_dir)
    console = console or Console(stderr=True, soft_wrap=True)
    if record is not None:
        check_record_matches(record, config, run_dir)
        check_sources(record)
    last = recover_dir(run_dir / LAST)
    if not (last / TRAINER_STATE).is_file():
        if last.exists():
            raise UserError(f"{last}: no {TRAINER_STATE}; this last/ is not a resumable checkpoint (damaged?): "
                            f"move it away to start the run again from step 0")
        console.print(f"[yellow]note[/] {run_dir} stopped before it saved a checkpoint: starting it again from "
                      f"step 0")
        trainer = cls(config, console, run_dir=run_dir, on_eval=on_eval)
        trainer.restart = True
        return trainer
    if record is None:   # (a run killed before it wrote data.json starts again above, and writes it)
        raise UserError(f"{run_dir / RECORD}: not found; a run writes it before its first checkpoint, so the "
                        f"folder is damaged or not mtcli's: restore it from a copy, or start a new run")
    meta = read_meta(last)
    check_saved_with(meta.get("train_config"), config, last, config_path)
    trainer = cls(config, console, run_dir=run_dir, init_dir=last, on_eval=on_eval)
    if changed and trainer.dist.is_main:
        write_json(config_path, config.to_dict())   # the run's own file: what it runs with from now on
        write_recipe(run_dir, config)
        console.print(f"[yellow]note[/] {run_dir} continues with "
                      f"{', '.join(f'{k} = {v}' for k, v in changed.items())}", highlight=False)
    try:
        trainer.model.load_state_dict(model_state_from(last))
        state = read_trainer_state(last)
        p = position_from(state)
        if p.epoch > config.epochs + 1 or p.step > trainer.total_steps or p.index > trainer.steps_per_epoch:
            raise ValueError(f"position step {p.step}, epoch {p.epoch} lies outside the run")
        if trainer.distiller is not None:   # before the optimizer, whose state refers to its parameters
            trainer.distiller.load_state_dict(state.get("distiller", {}))
        trainer.phases.enter(min(p.epoch, config.epochs))  # the optimizer's parameter groups depend on the phase
        trainer.phase.optimizer.load_state_dict(state["optimizer"])
        trainer.phase.scheduler.load_state_dict(state["scheduler"])
        trainer.weighting.load_state_dict(state["weighting"])
        set_rng_state(state["rng"])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"{last}: does not fit the run that {config_path} describes ({first}); resume from an "
                        f"earlier copy, or start the run again") from None
    trainer.checkpoints.best_overall = state["best_overall"]
    trainer.position = p
    truncate_log(trainer.run_dir / METRICS, trainer.position.step, trainer.console)
    return trainer


def truncate_log(path: Path, step: int, console: Console) -> None:
    """Drop metrics written after the checkpoint the run continues from (and a torn last line)."""
    if path.is_file():
        warn = lambda line: console.print(f"[yellow]note[/] {line}; cut off")  # noqa: E731
        kept = [r for r in read_metrics(path, on_torn=warn) if r.get("step", 0) <= step]
        write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def check_record_matches(record: dict, config: TrainConfig, run_dir: Path) -> None:
    """The data record and config.json describe one run: the same task file, and the tasks it
    declares read exactly the recorded train and dev files (checked before any is read)."""
    def edited(what: str):
        raise UserError(f"{run_dir / CONFIG}: {what} differs from what {run_dir / RECORD} recorded; one of "
                        f"them was edited: restore it")

    recorded = record["task_file"]["path"] if record.get("task_file") else None
    if recorded != config.tasks:
        edited(f"tasks ({config.tasks!r})")
    tasks = config.load_tasks()
    if set(tasks) != set(record["files"]):
        edited(f"the task names ({', '.join(tasks)})")
    for name, task in tasks.items():
        for split in REQUIRED_SPLITS:
            entry = record["files"][name].get(split)
            if entry is None or str(task.file(split)) != entry["path"]:
                edited(f"the {split} file of task {name!r} ({task.file(split)})")
    for name, entries in record.get("unlabeled", {}).items():
        if name not in tasks or [e["path"] for e in entries] != list(tasks[name].unlabeled):
            edited(f"the unlabeled files of task {name!r}")


def check_saved_with(saved, config: TrainConfig, last: Path, config_path: Path) -> None:
    """config.json is the configuration last/ was saved with (an edited one would continue another run)."""
    current = config.to_dict()
    if not isinstance(saved, dict):
        raise UserError(f"{last / META}: train_config is damaged; resume from an earlier copy")
    # paths aside: data.json checks what they hold
    edited = differences(saved, current, let_go=PATH_FIELDS + CHANGEABLE_ON_RESUME, among=set(saved) & set(current))
    if edited:   # the first, by name
        key = edited[0]
        raise UserError(f"{config_path}: {key} is {current[key]!r} but {last / META} records {saved[key]!r}, the "
                        f"value {last} was saved with; one of the two was edited: restore it (to change an option, "
                        f"start a new run)")
