"""Which phase each epoch trains in, and the phase now: with --pretrain-epochs N the first N
epochs train the heads over a frozen encoder, then the encoder fine-tunes; each phase gets a
fresh optimizer and schedule over its own steps (step.py's `Phase`)."""

from __future__ import annotations

from mtcli.train.config import TrainConfig
from mtcli.train.step import Phase


class Phases:
    def __init__(self, model, config: TrainConfig, method, steps_per_epoch: int, total_steps: int, more=()):
        """`more`: what else trains at the heads' rate (the embedding distillation's projections)."""
        self.model, self.config, self.method, self.more = model, config, method, more
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
        self.current: Phase | None = None

    def enter(self, epoch: int) -> Phase:
        """The phase of `epoch`: the current one if `epoch` belongs to it, else a new one started
        (the encoder frozen or unfrozen, a fresh optimizer and schedule)."""
        config = self.config
        name = config.phase_of(epoch)
        if self.current is not None and name == self.current.name:
            return self.current
        start = (epoch - 1) * self.steps_per_epoch
        end = config.pretrain_epochs * self.steps_per_epoch if name == "pretrain" and config.phase != "pretrain" \
            else self.total_steps
        span = max(1, min(end, self.total_steps) - start)
        self.current = Phase.start(name, self.model, config, span, self.method, self.more)
        return self.current
