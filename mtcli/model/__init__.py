"""minBERT and its weight loading. Importing this package imports torch."""

from mtcli.model.bert import MinBert
from mtcli.model.config import BertConfig

__all__ = ["MinBert", "BertConfig"]
