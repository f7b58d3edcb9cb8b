"""Multitask training. `from mtcli.train import TrainConfig, train`.

TrainConfig (train/config.py) imports no torch, so the CLI reads its defaults without paying
for torch; `train` and `resume` (train/loop.py) import it when first named."""

from mtcli.train.config import TrainConfig

__all__ = ["TrainConfig", "resume", "train"]


def __getattr__(name: str):
    if name in ("train", "resume"):
        from mtcli.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'mtcli.train' has no attribute {name!r}")
