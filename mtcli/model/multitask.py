"""One shared minBERT encoder with one head per declared task (see mtcli.model.heads).

Pooling is the [CLS] hidden state or the mask-aware mean of all token states.
`forward` returns what the task's loss takes; `predict` turns it into what users see
(probabilities or a score), and is what the ONNX graphs compute.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn

from mtcli.core.encoding import POOLINGS, Encoding
from mtcli.core.errors import UserError
from mtcli.core.tasks import Task
from mtcli.core.tokenizer import MAX_LENGTH
from mtcli.model.bert import MinBert
from mtcli.model.heads import Head, make_head


@dataclass
class HeadConfig:
    pooling: str = "mean"
    dropout: float = 0.1
    max_length: int = MAX_LENGTH

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise UserError(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout {self.dropout} is not in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    if how == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class MultitaskModel(nn.Module):
    def __init__(self, encoder: MinBert, head_config: HeadConfig, tasks: dict[str, Task]):
        super().__init__()
        self.encoder = encoder
        self.head_config = head_config
        self.tasks = dict(tasks)
        self.heads = nn.ModuleDict({name: make_head(task, encoder.hidden_size, head_config.dropout)
                                    for name, task in tasks.items()})

    def head(self, task: str) -> Head:
        return self.heads[task]

    def encoding(self, task: str) -> Encoding:
        return self.heads[task].encoding

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)
        return pool(hidden, attention_mask, self.head_config.pooling)

    def embed_pair(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """u, v for a separate encoding, in one encoder pass over both sides."""
        names = ("input_ids", "attention_mask", "token_type_ids")  # token types: absent for MPNet's graphs
        both = self.embed(*(torch.cat([inputs[f"{n}_a"], inputs[f"{n}_b"]]) if f"{n}_a" in inputs else None
                            for n in names))
        rows = inputs["input_ids_a"].shape[0]
        return both[:rows], both[rows:]

    def encode(self, encoding: Encoding, inputs: dict[str, torch.Tensor]):
        """The encoder's output for a batch under `encoding`: the pooled embedding (single, joint),
        or the pair's two (separate). Tasks that share a forward pass share this."""
        if encoding == "separate":
            return self.embed_pair(inputs)
        return self.embed(inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"))

    def forward(self, task: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.heads[task](self, inputs)

    def loss(self, task: str, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.heads[task].loss(output, labels)

    def predict(self, task: str, output: torch.Tensor) -> torch.Tensor:
        return self.heads[task].predict(output)

    def label_tensor(self, task: str, labels, device) -> torch.Tensor:
        return torch.tensor(labels, dtype=self.heads[task].label_dtype, device=device)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def head_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.heads[task].parameters())
