"""mtcli: multitask fine-tuning of a BERT or MPNet encoder on declared sentence tasks, with 35
multitask methods (gradient combinations in a fused native kernel), ONNX export and scoring.

Importing the package is cheap: torch is imported only by the modules that need it
(`mtcli.model`, training, export), never by scoring.
"""

from mtcli.core.errors import UserError  # what mtcli raises for anything its caller can fix (torch-free)
from mtcli.core.version import __version__

__all__ = ["Scorer", "UserError", "__version__"]


def __getattr__(name: str):
    """`from mtcli import Scorer` without importing anything else (and never torch)."""
    if name == "Scorer":
        from mtcli.inference.scorer import Scorer

        return Scorer
    raise AttributeError(f"module 'mtcli' has no attribute {name!r}")
