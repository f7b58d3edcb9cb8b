"""BERT hyper-parameters, read from and written to an HF-layout config.json."""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from mtcli.core.errors import UserError

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


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
        if self.hidden_size % self.num_attention_heads:
            raise UserError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise UserError(f"hidden_act {self.hidden_act!r} is not supported (expected one of {', '.join(ACTIVATIONS)})")

    @classmethod
    def from_dict(cls, values: dict) -> "BertConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_file(cls, path: str | Path) -> "BertConfig":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: not found; expected an HF-layout BERT folder with config.json") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        model_type = values.get("model_type", "bert")
        if model_type != "bert":
            raise UserError(f"{path}: model_type is {model_type!r}; mtcli loads BERT checkpoints only")
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        return {"model_type": "bert", "architectures": ["BertModel"], **asdict(self)}
