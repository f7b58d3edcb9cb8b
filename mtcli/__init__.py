"""mtcli: multitask fine-tuning of a BERT encoder with PCGrad, ONNX export and scoring.

Importing the package is cheap: torch is imported only by the modules that need it
(`mtcli.model`, training, export), never by scoring.
"""

__version__ = "0.1.0"
