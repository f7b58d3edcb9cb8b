"""ONNX export of a checkpoint: one fused graph per task, tokenizer and manifest. Imports torch."""

from mtcli.export.onnx import export

__all__ = ["export"]
