"""Multitask training. `from mtcli.train import TrainConfig, train`."""

from mtcli.train.config import TrainConfig
from mtcli.train.loop import train

__all__ = ["TrainConfig", "train"]
