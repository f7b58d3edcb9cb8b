"""What a run saves in its folder: at the start, the records that say what it is (config.json,
recipe.toml, data.json, the teacher's labels); `last/`, the weights with everything `--resume`
needs (state.py), every --save-every steps, at each epoch's end and when a run is stopped; and
`best/`, the weights of the best dev epoch so far. Each checkpoint carries the record a model
card reads: the epoch and step, the dev scores, the configuration, and where and how long this
process trained."""

from __future__ import annotations

import math
import platform
import signal
import time
from pathlib import Path

import torch

from mtcli.core.errors import Interrupted, UserError
from mtcli.core.fileio import write_json
from mtcli.model.checkpoint import META, read_meta, save_checkpoint
from mtcli.run.folder import BEST, CONFIG, LAST, METRICS, TEACHER_LABELS
from mtcli.run.provenance import record_teacher_labels, write_record
from mtcli.train.recipe import write_recipe
from mtcli.train.state import Position, trainer_state
from mtcli.run.teacher_labels import write_labels


def open_run_folder(run_dir: Path, config, sources, teacher_labels: dict, *, restart: bool, new: bool, dist,
                    device) -> None:
    """A new run's folder (refused on every rank if it holds anything, unless the run starts again
    in it) with the records that say what the run is: config.json, recipe.toml (what `mtcli train
    --config` reads: the run again), data.json; and, new or resumed, the teacher's labels that a
    resume or a sibling run reuses. `sources`: the main process's description of the data."""
    if new:
        exists = run_dir.exists() and any(run_dir.iterdir()) and not restart
        if not dist.all_true(not exists, device):
            raise UserError(f"{run_dir}: run folder exists; pick another --name (or --resume it)")
        dist.barrier()
    if not dist.is_main:
        return
    if new:
        run_dir.mkdir(parents=True, exist_ok=True)
        if restart:  # its own log of the steps that no checkpoint kept
            (run_dir / METRICS).unlink(missing_ok=True)
        write_json(run_dir / CONFIG, config.to_dict())
        write_recipe(run_dir, config)
        write_record(run_dir, sources)
    if teacher_labels:
        write_labels(run_dir / TEACHER_LABELS, teacher_labels)
        record_teacher_labels(run_dir, {task: labels.sha256 for task, labels in teacher_labels.items()})


class Checkpoints:
    def __init__(self, run_dir: Path, config, model, tokenizer, device: torch.device, processes: int,
                 phases, weighting, distiller=None):
        """`phases`, `weighting`, `distiller`: what last/ saves beside the weights (the current
        phase's optimizer and schedule, the weighting's state, the embedding projections)."""
        self.run_dir, self.config, self.model, self.tokenizer = run_dir, config, model, tokenizer
        self.device, self.processes = device, processes
        self.phases, self.weighting, self.distiller = phases, weighting, distiller
        self.best_overall = -math.inf                    # the best dev overall so far: best/'s
        self.started: tuple[float, int] | None = None   # (clock, step) when this process began training

    def start(self, step: int) -> None:
        self.started = (time.perf_counter(), step)

    def save_last(self, position: Position, results: dict | None = None) -> None:
        state = trainer_state(position, self.best_overall, self.phases.current, self.weighting, self.distiller)
        save_checkpoint(self.model, self.tokenizer, self.run_dir / LAST, info=self.info(position, results),
                        trainer_state=state)

    def save_if_best(self, position: Position, results: dict) -> bool:
        """best/ replaced if the dev overall improved on every earlier evaluation; whether it did."""
        if results["overall"] is None or results["overall"] <= self.best_overall:
            return False
        self.best_overall = results["overall"]
        save_checkpoint(self.model, self.tokenizer, self.run_dir / BEST, info=self.info(position, results))
        return True

    def stop(self, position: Position, signum: int | None, dist) -> None:
        """A SIGINT/SIGTERM at a step boundary: last/ saved here (by the main process; the others
        wait), and the run stops resumably."""
        if dist.is_main:
            self.save_last(position)
        dist.barrier()
        raise Interrupted(signum or signal.SIGTERM, f"saved {self.run_dir / LAST} at step {position.step}; "
                                                    f"continue with `mtcli train --resume {self.run_dir}`")

    def saved(self) -> list[str]:
        return [str(self.run_dir / n) for n in (BEST, LAST) if (self.run_dir / n / META).is_file()]

    def last_saved(self) -> str:
        try:
            return f"step {read_meta(self.run_dir / LAST).get('step')}"
        except UserError:
            return "none saved yet"

    def info(self, position: Position, results: dict | None) -> dict:
        return {"run": str(self.run_dir), "epoch": position.epoch, "step": position.step, "dev": results,
                "train_config": self.config.to_dict(), "trained": self.trained(position)}

    def trained(self, position: Position) -> dict:
        """Where and how long this process trained (a model card's "training time and machine");
        a resumed run's figure covers the steps since its resume."""
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        return {"machine": platform.node(), "processor": platform.processor() or platform.machine(),
                "device": device, "threads": torch.get_num_threads(), "processes": self.processes,
                "seconds": round(time.perf_counter() - self.started[0], 1) if self.started else 0.0,
                "from_step": self.started[1] if self.started else position.step}
