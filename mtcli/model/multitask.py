"""One shared minBERT encoder with three task heads.

  sst   pooled sentence -> dropout -> linear -> 5 logits                 (cross-entropy)
  para  cross:   pooled joint pair -> dropout -> linear -> 1 logit        (BCE with logits)
        siamese: [u, v, |u-v|, u*v] -> dropout -> linear -> 1 logit
  sts   cross:   pooled joint pair -> dropout -> linear -> 5 * sigmoid    (MSE on the 0-5 scale)
        cosine:  5 * cos(u, v)  (no parameters; Sentence-BERT's cosine objective)

Pooling is the [CLS] hidden state or the mask-aware mean of all token states.
`forward` returns what the loss takes; `predict` turns it into what users see
(probabilities or a 0-5 score), and is what the ONNX graphs compute.
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtcli.core.encoding import PAIR_MODES, Encoding, encoding_for
from mtcli.core.errors import UserError
from mtcli.model.bert import MinBert
from mtcli.core.tasks import TASKS
from mtcli.core.tokenizer import MAX_LENGTH

POOLINGS = ("cls", "mean")


@dataclass
class HeadConfig:
    pooling: str = "mean"
    para_mode: str = "siamese"   # cross | siamese
    sts_mode: str = "cosine"     # cross | cosine
    dropout: float = 0.1
    max_length: int = MAX_LENGTH

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise UserError(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        for task, mode in (("para", self.para_mode), ("sts", self.sts_mode)):
            if mode not in PAIR_MODES[task]:
                raise UserError(f"{task} mode {mode!r} is not one of {', '.join(PAIR_MODES[task])}")

    def mode(self, task: str) -> str:
        return {"sst": "single", "para": self.para_mode, "sts": self.sts_mode}[task]

    def encoding(self, task: str) -> Encoding:
        return encoding_for(TASKS[task], self.mode(task))

    def to_dict(self) -> dict:
        return asdict(self)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    if how == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class MultitaskModel(nn.Module):
    def __init__(self, encoder: MinBert, heads: HeadConfig):
        super().__init__()
        self.encoder = encoder
        self.head_config = heads
        width = encoder.hidden_size
        self.dropout = nn.Dropout(heads.dropout)
        self.heads = nn.ModuleDict({
            "sst": nn.Linear(width, TASKS["sst"].num_labels),
            "para": nn.Linear(4 * width if heads.para_mode == "siamese" else width, 1),
        })
        if heads.sts_mode == "cross":
            self.heads["sts"] = nn.Linear(width, 1)

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)
        return pool(hidden, attention_mask, self.head_config.pooling)

    def embed_pair(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """u, v for a separate encoding, in one encoder pass over both sides."""
        names = ("input_ids", "attention_mask", "token_type_ids")
        both = self.embed(*(torch.cat([inputs[f"{n}_a"], inputs[f"{n}_b"]]) for n in names))
        rows = inputs["input_ids_a"].shape[0]
        return both[:rows], both[rows:]

    def forward(self, task: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """sst: logits (B, 5); para: logit (B,); sts: score in 0-5 (B,)."""
        encoding = self.head_config.encoding(task)
        if encoding == "separate":
            u, v = self.embed_pair(inputs)
            if task == "sts":  # cosine mode
                return 5.0 * F.cosine_similarity(u, v, dim=-1)
            features = torch.cat([u, v, (u - v).abs(), u * v], dim=-1)
        else:
            features = self.embed(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
        out = self.heads[task](self.dropout(features))
        if task == "sst":
            return out
        if task == "para":
            return out.squeeze(-1)
        return 5.0 * torch.sigmoid(out.squeeze(-1))

    @staticmethod
    def loss(task: str, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if task == "sst":
            return F.cross_entropy(output.float(), labels)
        if task == "para":
            return F.binary_cross_entropy_with_logits(output.float(), labels.float())
        return F.mse_loss(output.float(), labels.float())

    @staticmethod
    def predict(task: str, output: torch.Tensor) -> torch.Tensor:
        """sst: class probabilities; para: P(duplicate); sts: score clamped to 0-5."""
        if task == "sst":
            return torch.softmax(output.float(), dim=-1)
        if task == "para":
            return torch.sigmoid(output.float())
        return output.float().clamp(0.0, 5.0)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def head_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.heads[task].parameters()) if task in self.heads else []
