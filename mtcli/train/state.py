"""What a run must keep to continue bit-identically after a kill: where it is, the best dev
score so far, the optimizer and schedule, every RNG, and the weighting's own state (PCGrad's
and GradVac's shuffles, GradVac's cosine targets, Nash-MTL's warm start). `last/` holds it
in trainer_state.pt next to the weights."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mtcli.core.errors import UserError
from mtcli.model.checkpoint import TRAINER_STATE


@dataclass
class Position:
    """Where a run is: optimizer steps done, and the epoch (1-based) and step within it."""
    step: int = 0
    epoch: int = 1
    index: int = 0
    epoch_losses: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    skipped: int = 0

    def next_epoch(self) -> None:
        self.epoch, self.index, self.epoch_losses = self.epoch + 1, 0, defaultdict(list)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainer_state(position: Position, best_overall: float, phase, weighting) -> dict:
    """Everything but the weights that `--resume` needs, as one picklable dict."""
    return {"optimizer": phase.optimizer.state_dict(), "scheduler": phase.scheduler.state_dict(),
            "best_overall": best_overall, "rng": rng_state(), "weighting": weighting.state_dict(),
            "position": {"step": position.step, "epoch": position.epoch, "index": position.index,
                         "epoch_losses": dict(position.epoch_losses), "skipped": position.skipped}}


def read_trainer_state(last: Path) -> dict:
    try:
        return torch.load(last / TRAINER_STATE, map_location="cpu", weights_only=False)
    except Exception as e:  # torch.load raises several types on corrupt files
        raise UserError(f"{last / TRAINER_STATE}: corrupt ({type(e).__name__}); resume from an earlier copy") from None


def position_from(state: dict) -> Position:
    p = state["position"]
    return Position(p["step"], p["epoch"], p["index"], defaultdict(list, p["epoch_losses"]), p["skipped"])
