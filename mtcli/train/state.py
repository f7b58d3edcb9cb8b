"""What a run must keep to continue bit-identically after a kill: where it is, the best dev
score so far, the optimizer and schedule, every RNG, and the weighting's own state (PCGrad's
and GradVac's shuffles, GradVac's cosine targets, Nash-MTL's warm start). `last/` holds it
in trainer_state.pt next to the weights.

A run folder may come from someone else, so the state is plain data: tensors, numbers,
strings, lists, tuples and dicts (numpy's RNG state as a list of numbers), saved with
torch.save and read back with `weights_only=True`, which builds nothing else. Loading a
file never runs code from it; a file that would need more than plain data is refused.
Files written before this format (numpy arrays inside) are read with numpy's array
constructor allowed as well, and nothing more.
"""

from __future__ import annotations

import math
import pickle
import random
import warnings
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
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {"key": numpy_state["state"]["key"].tolist(), "pos": int(numpy_state["state"]["pos"])}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = {**numpy_state, "state": {"key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
                                                "pos": int(numpy_state["state"]["pos"])}}
    np.random.set_state(numpy_state)
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainer_state(position: Position, best_overall: float, phase, weighting, distiller=None) -> dict:
    """Everything but the weights that `--resume` needs, as plain data (see the module's note);
    with --distill-embeddings the projections that train beside the model."""
    state = {"optimizer": phase.optimizer.state_dict(), "scheduler": phase.scheduler.state_dict(),
             "best_overall": best_overall, "rng": rng_state(), "weighting": weighting.state_dict(),
             "position": {"step": position.step, "epoch": position.epoch, "index": position.index,
                          "epoch_losses": dict(position.epoch_losses), "skipped": position.skipped}}
    if distiller is not None:
        state["distiller"] = dict(distiller.state_dict())
    return state


def read_trainer_state(last: Path) -> dict:
    """The training state of a `last/` checkpoint, loaded as plain data only, and checked."""
    path = last / TRAINER_STATE
    try:
        with warnings.catch_warnings():  # torch warns of unusual pickle protocols before it refuses them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path}: holds more than training state (a pickle that would construct objects or call "
                        f"functions); mtcli does not load it: resume only runs you trust, or start the run again") \
            from None
    except Exception as e:  # torch.load raises several types on corrupt files
        raise UserError(f"{path}: corrupt ({type(e).__name__}); resume from an earlier copy") from None
    check_state(state, path)
    return state


def check_state(state, path: Path) -> None:
    """The shape every reader of the state relies on; one UserError naming the field otherwise."""
    def bad(where: str, problem: str):
        raise UserError(f"{path}: {where}: {problem}; the file is damaged or not mtcli's: resume from an earlier "
                        f"copy or start the run again")

    if not isinstance(state, dict):
        bad("state", f"expected a dict, found {type(state).__name__}")
    for key, kind in (("optimizer", dict), ("scheduler", dict), ("rng", dict), ("weighting", dict),
                      ("position", dict), ("best_overall", (int, float))):
        if not isinstance(state.get(key), kind):
            bad(key, "missing or of the wrong type")
    if math.isnan(state["best_overall"]):
        bad("best_overall", "is NaN")
    position = state["position"]
    for key in ("step", "epoch", "index", "skipped"):
        if not isinstance(position.get(key), int) or isinstance(position.get(key), bool) or position[key] < 0:
            bad(f"position.{key}", "expected a whole number >= 0")
    if position["epoch"] < 1:
        bad("position.epoch", "expected a whole number >= 1")
    losses = position.get("epoch_losses")
    if not isinstance(losses, dict) or not all(isinstance(k, str) and isinstance(v, list)
                                               and all(isinstance(x, (int, float)) for x in v)
                                               for k, v in losses.items()):
        bad("position.epoch_losses", "expected task -> list of numbers")
    distiller = state.get("distiller", {})
    if not isinstance(distiller, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in distiller.items()):
        bad("distiller", "expected name -> tensor")
    rng = state["rng"]
    if not isinstance(rng.get("torch"), torch.Tensor) or rng["torch"].dtype != torch.uint8:
        bad("rng.torch", "expected torch's RNG state (a byte tensor)")
    if not isinstance(rng.get("numpy"), (dict, tuple)) or not isinstance(rng.get("python"), tuple):
        bad("rng", "expected numpy's and Python's RNG states")


def position_from(state: dict) -> Position:
    p = state["position"]
    return Position(p["step"], p["epoch"], p["index"], defaultdict(list, p["epoch_losses"]), p["skipped"])
