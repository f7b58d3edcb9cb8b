"""BERT hyper-parameters, read from and written to an HF-layout config.json."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mtcli.core.errors import UserError
from mtcli.core.typed import typed_values

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
# Bounds far beyond any BERT, so that a hostile config.json cannot ask for terabytes
LIMITS = {"vocab_size": 10_000_000, "hidden_size": 65_536, "num_hidden_layers": 1_000, "num_attention_heads": 1_024,
          "intermediate_size": 1_048_576, "max_position_embeddings": 1_048_576, "type_vocab_size": 1_024}


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self):
        for name, high in LIMITS.items():
            value = getattr(self, name)
            if not 1 <= value <= high:
                raise UserError(f"{name} {value} is not between 1 and {high:,}; not a BERT configuration")
        if not (0 <= self.hidden_dropout_prob < 1 and 0 <= self.attention_probs_dropout_prob < 1
                and 0 < self.layer_norm_eps < 1 and 0 <= self.pad_token_id < self.vocab_size):
            raise UserError("dropout, layer_norm_eps or pad_token_id out of range; not a BERT configuration")
        if self.hidden_size % self.num_attention_heads:
            raise UserError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise UserError(f"hidden_act {self.hidden_act!r} is not supported (expected one of {', '.join(ACTIVATIONS)})")

    @classmethod
    def from_dict(cls, values: dict, source: str | Path = "config.json") -> "BertConfig":
        """The fields mtcli uses, type-checked (an HF config.json holds many more: ignored)."""
        try:
            present = {k: v for k, v in values.items() if v is not None}  # null: HF's "not set", the default
            return cls(**typed_values(cls, present, source, unknown_ok=True))
        except UserError as e:
            message = str(e)
            raise UserError(message if message.startswith(str(source)) else f"{source}: {message}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> "BertConfig":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: not found; expected an HF-layout BERT folder with config.json") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(values, dict):
            raise UserError(f"{path}: expected a JSON object (an HF BERT config)")
        model_type = values.get("model_type", "bert")
        if model_type != "bert":
            raise UserError(f"{path}: model_type is {model_type!r}; mtcli loads BERT checkpoints only")
        return cls.from_dict(values, path)

    def to_dict(self) -> dict:
        return {"model_type": "bert", "architectures": ["BertModel"], **asdict(self)}
