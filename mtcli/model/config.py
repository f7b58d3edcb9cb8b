"""Encoder hyper-parameters, read from and written to an HF-layout config.json.

Two families load: BERT and MPNet (`model_type` in config.json). They share the post-LN
transformer layer; what differs is stated once, in FAMILIES, and read by the model
(mtcli.model.bert) and the loader's name tables (mtcli.model.loading), never above them:

    bert   absolute positions 0..length-1, token type embeddings
    mpnet  positions counted from pad_token_id + 1 (padding sits at pad_token_id), no token
           types, and one relative position bias table (buckets x heads) shared by all layers
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from mtcli.core.errors import UserError
from mtcli.core.fileio import read_json_object
from mtcli.core.typed import out_of_bounds, typed_values

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
Probability = Annotated[float, Field(ge=0, lt=1)]


@dataclass(frozen=True)
class Family:
    """What one encoder family's config.json and weights mean."""
    architecture: str            # HF's class name, written to config.json's "architectures"
    weight_prefix: str           # the prefix HF's task models put before the encoder's weights
    token_types: bool            # token type embeddings (BERT's segment A/B)
    positions_after_padding: bool  # positions count from pad_token_id + 1 (RoBERTa's and MPNet's scheme)
    relative_attention_bias: bool  # one bucketed relative position bias shared by all layers
    defaults: dict               # config.json values that differ from BertConfig's defaults
    tokenizer_class: str         # HF's fast tokenizer class for the family's vocabulary
    special_tokens: dict         # its special tokens, as that tokenizer names them


FAMILIES = {
    "bert": Family("BertModel", "bert.", token_types=True, positions_after_padding=False,
                   relative_attention_bias=False, defaults={}, tokenizer_class="BertTokenizerFast",
                   special_tokens={"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                                   "unk_token": "[UNK]", "mask_token": "[MASK]"}),
    "mpnet": Family("MPNetModel", "mpnet.", token_types=False, positions_after_padding=True,
                    relative_attention_bias=True,
                    defaults={"type_vocab_size": 0, "relative_attention_num_buckets": 32, "pad_token_id": 1,
                              "layer_norm_eps": 1e-5, "max_position_embeddings": 514},
                    tokenizer_class="MPNetTokenizerFast",
                    special_tokens={"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>",
                                    "pad_token": "<pad>", "unk_token": "[UNK]", "mask_token": "<mask>"}),
}
# MPNet's bucketing (transformers' MPNetEncoder.relative_position_bucket): distances past this share a bucket
RELATIVE_MAX_DISTANCE = 128


@dataclass
class BertConfig:
    """One encoder's configuration, BERT's field names (MPNet's config.json uses the same). The
    sizes' bounds lie far beyond any BERT's, so that a hostile config.json cannot ask for terabytes."""
    vocab_size: Annotated[int, Field(ge=1, le=10_000_000)] = 30522
    hidden_size: Annotated[int, Field(ge=1, le=65_536)] = 384
    num_hidden_layers: Annotated[int, Field(ge=1, le=1_000)] = 6
    num_attention_heads: Annotated[int, Field(ge=1, le=1_024)] = 12
    intermediate_size: Annotated[int, Field(ge=1, le=1_048_576)] = 1536
    hidden_act: str = "gelu"
    hidden_dropout_prob: Probability = 0.1
    attention_probs_dropout_prob: Probability = 0.1
    max_position_embeddings: Annotated[int, Field(ge=1, le=1_048_576)] = 512
    type_vocab_size: int = 2
    layer_norm_eps: Annotated[float, Field(gt=0, lt=1)] = 1e-12
    pad_token_id: int = 0
    model_type: str = "bert"
    relative_attention_num_buckets: int = 0

    def __post_init__(self):
        if self.model_type not in FAMILIES:
            raise UserError(f"model_type {self.model_type!r} is not supported (mtcli loads {', '.join(FAMILIES)})")
        found = out_of_bounds(self)   # each number within its bounds (core/typed.py)
        if found:
            name, _, number, problem = found
            raise UserError(f"{name} {number}: {problem}; not a {self.model_type} configuration")
        family = self.family
        if family.token_types != (1 <= self.type_vocab_size <= 1_024):
            raise UserError(f"type_vocab_size {self.type_vocab_size}: a {self.model_type} encoder has "
                            + ("1 to 1,024 token types" if family.token_types else "no token types (0)"))
        if family.relative_attention_bias != (2 <= self.relative_attention_num_buckets <= 4_096):
            raise UserError(f"relative_attention_num_buckets {self.relative_attention_num_buckets}: a {self.model_type} "
                            "encoder has " + ("2 to 4,096 buckets" if family.relative_attention_bias else "none (0)"))
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise UserError(f"pad_token_id {self.pad_token_id} is not a token of the {self.vocab_size:,}; not a "
                            f"{self.model_type} configuration")
        if family.positions_after_padding and self.pad_token_id + 2 > self.max_position_embeddings:
            raise UserError(f"max_position_embeddings {self.max_position_embeddings} leaves no position after "
                            f"pad_token_id {self.pad_token_id}")
        if self.hidden_size % self.num_attention_heads:
            raise UserError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise UserError(f"hidden_act {self.hidden_act!r} is not supported (expected one of {', '.join(ACTIVATIONS)})")

    @property
    def family(self) -> Family:
        return FAMILIES[self.model_type]

    @property
    def max_tokens(self) -> int:
        """The longest input the position table covers (MPNet's first position is pad_token_id + 1)."""
        return self.max_position_embeddings - (self.pad_token_id + 1 if self.family.positions_after_padding else 0)

    @classmethod
    def for_family(cls, model_type: str = "bert", **values) -> "BertConfig":
        """A configuration of `model_type` with its family's defaults (tests, random models)."""
        family = FAMILIES.get(model_type)
        defaults = family.defaults if family is not None else {}
        return cls(**{**defaults, **values, "model_type": model_type})

    @classmethod
    def from_dict(cls, values: dict, source: str | Path = "config.json") -> "BertConfig":
        """The fields mtcli uses, type-checked (an HF config.json holds many more: ignored). A
        field the file leaves out takes its family's default."""
        model_type = values.get("model_type", "bert")
        if model_type not in FAMILIES:
            raise UserError(f"{source}: model_type is {model_type!r}; mtcli loads {' and '.join(FAMILIES)} encoders "
                            "(see docs/backbones.md)")
        try:
            present = {k: v for k, v in values.items() if v is not None}  # null: HF's "not set", the default
            checked = typed_values(cls, present, source, unknown_ok=True)
            return cls(**{**FAMILIES[model_type].defaults, **checked, "model_type": model_type})
        except UserError as e:
            message = str(e)
            raise UserError(message if message.startswith(str(source)) else f"{source}: {message}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> "BertConfig":
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: not found; expected an HF-layout encoder folder with config.json")
        values = read_json_object(path, "config.json", "an HF encoder folder's config.json is one object of its sizes")
        return cls.from_dict(values, path)

    def to_dict(self) -> dict:
        """config.json as the family's own HF class writes it (so transformers loads it too)."""
        values = {"model_type": self.model_type, "architectures": [self.family.architecture],
                  "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                  "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
                  "intermediate_size": self.intermediate_size, "hidden_act": self.hidden_act,
                  "hidden_dropout_prob": self.hidden_dropout_prob,
                  "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
                  "max_position_embeddings": self.max_position_embeddings, "layer_norm_eps": self.layer_norm_eps,
                  "pad_token_id": self.pad_token_id}
        if self.family.token_types:
            values["type_vocab_size"] = self.type_vocab_size
        if self.family.relative_attention_bias:
            values["relative_attention_num_buckets"] = self.relative_attention_num_buckets
        return values
