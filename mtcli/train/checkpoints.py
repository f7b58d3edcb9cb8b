"""What a run saves: `last/`, the weights with everything `--resume` needs (state.py), every
--save-every steps, at each epoch's end and when a run is stopped; and `best/`, the weights of
the best dev epoch. Each carries the record a model card reads: the epoch and step, the dev
scores, the configuration, and where and how long this process trained."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

from mtcli.core.errors import UserError
from mtcli.model.checkpoint import META, read_meta, save_checkpoint
from mtcli.run.folder import BEST, LAST
from mtcli.train.state import Position, trainer_state


class Checkpoints:
    def __init__(self, run_dir: Path, config, model, tokenizer, device: torch.device, processes: int):
        self.run_dir, self.config, self.model, self.tokenizer = run_dir, config, model, tokenizer
        self.device, self.processes = device, processes
        self.started: tuple[float, int] | None = None   # (clock, step) when this process began training

    def start(self, step: int) -> None:
        self.started = (time.perf_counter(), step)

    def save_last(self, position: Position, best_overall: float, phase, weighting, distiller=None,
                  results: dict | None = None) -> None:
        state = trainer_state(position, best_overall, phase, weighting, distiller)
        save_checkpoint(self.model, self.tokenizer, self.run_dir / LAST, info=self.info(position, results),
                        trainer_state=state)

    def save_best(self, position: Position, results: dict) -> None:
        save_checkpoint(self.model, self.tokenizer, self.run_dir / BEST, info=self.info(position, results))

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
