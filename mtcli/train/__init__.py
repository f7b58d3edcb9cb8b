"""Multitask training. `from mtcli.train import TrainConfig, train`."""

from mtcli.train.config import TrainConfig
from mtcli.train.loop import resume, train

__all__ = ["TrainConfig", "resume", "train"]
