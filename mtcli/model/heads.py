"""Task heads: one per (arity, kind), each owning everything task-specific about a task.

                 classification (multiclass: C logits, CE; binary: 1 logit, BCE)    regression (MSE, declared range)
  one sentence   pooled -> dropout -> linear                                        pooled -> dropout -> linear -> scaled sigmoid
  pair, cross    pooled joint pair -> dropout -> linear                             pooled joint pair -> dropout -> linear -> scaled sigmoid
  pair, siamese  [u, v, |u-v|, u*v] -> dropout -> linear                            -
  pair, cosine   -                                                                  low + (high - low) * cos(u, v)  (no parameters)

A head knows its input encoding, computes the output its loss takes (`forward`), the
loss, the prediction users see (probabilities, P(positive) or a score clamped to the
range: what the ONNX graphs return), the label dtype, which pairs count as similar
for the pair objectives, and under distillation the target its loss takes instead of the
gold label (`target`: gold and a teacher's prediction mixed, mtcli.train.distillation). Nothing outside this module and mtcli.core.tasks looks at what
a task is called.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtcli.core.encoding import Encoding, encoding_for
from mtcli.core.tasks import Task

SIMILAR_FROM = 0.6  # a regression pair counts as similar from 60% of its range (STS: gold >= 3 of 5)
TINY = 1e-12        # a teacher's probability of exactly 0 or 1 kept off the logarithm's pole


class Head(nn.Module):
    """What one task makes of the shared encoder's output."""

    def __init__(self, task: Task, dropout: float):
        super().__init__()
        self.task = task
        self.encoding: Encoding = encoding_for(task)
        self.dropout = nn.Dropout(dropout)

    def forward(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the loss takes, from the encoder's pooled embedding(s) of the row."""
        return self.from_embedding(model.encode(self.encoding, inputs))

    def from_embedding(self, embedded, rows=None) -> torch.Tensor:
        """The output from what `MultitaskModel.encode` gave for a batch (the pooled embedding, or
        the pair's two), for `rows` of it (default: all): tasks that share a forward pass each
        take their own rows of one encoding."""
        if self.encoding == "separate":
            u, v = embedded
            return self.from_pair(u, v) if rows is None else self.from_pair(u[rows], v[rows])
        return self.from_pooled(embedded if rows is None else embedded[rows])

    def from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """The output from the pooled embedding of a sentence or a joint pair."""
        raise NotImplementedError

    def from_pair(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The output from the separately pooled embeddings of a pair's two sentences (the
        second half of a separate encoding; scoring reuses one sentence's embedding in many pairs)."""
        raise NotImplementedError

    def similar(self, labels) -> list[bool] | None:
        """Which labelled pairs are similar (for the cosine-embedding loss); None: not a pair task."""
        return None

    def target(self, gold: list, teacher: np.ndarray, gold_weight: float, temperature: float, device) -> torch.Tensor:
        """The distillation target of a batch (BAM's teacher annealing): per row gold_weight x the gold
        label + (1 - gold_weight) x the teacher's prediction (softened by `temperature`), or the
        teacher's alone where the row has no gold label (None). The task's own loss takes it:
        cross-entropy against a distribution, BCE against a probability, MSE against a score."""
        soft = self.tempered(np.asarray(teacher, dtype=np.float64), temperature)
        has_gold = np.array([g is not None for g in gold])
        if has_gold.any() and gold_weight > 0:
            hard = self.as_distribution([g if g is not None else 0 for g in gold])
            mask = has_gold.reshape((-1,) + (1,) * (soft.ndim - 1))
            soft = np.where(mask, gold_weight * hard + (1 - gold_weight) * soft, soft)
        return torch.as_tensor(soft, dtype=torch.float32, device=device)

    def tempered(self, predictions: np.ndarray, temperature: float) -> np.ndarray:
        """A teacher's predictions at `temperature` (a regression score has none: as it is)."""
        return predictions

    def as_distribution(self, labels: list) -> np.ndarray:
        """Gold labels in the form of the teacher's predictions."""
        return np.asarray(labels, dtype=np.float64)

    @property
    def has_positive_pairs(self) -> bool:
        """Whether label 1 marks two sentences that mean the same (the ranking loss's positives)."""
        return False


class Classifier(Head):
    """Multiclass: C logits, cross-entropy, softmax. Binary: one logit, BCE, sigmoid."""

    label_dtype = torch.long

    def __init__(self, task: Task, width: int, dropout: float):
        super().__init__(task, dropout)
        self.binary = task.kind == "binary"
        if self.binary:
            self.label_dtype = torch.float32
        features = 4 * width if self.encoding == "separate" else width
        self.linear = nn.Linear(features, 1 if self.binary else len(task.labels))

    def from_pooled(self, pooled):
        out = self.linear(self.dropout(pooled))
        return out.squeeze(-1) if self.binary else out

    def from_pair(self, u, v):
        return self.from_pooled(torch.cat([u, v, (u - v).abs(), u * v], dim=-1))

    def loss(self, output, labels):
        if self.binary:
            return F.binary_cross_entropy_with_logits(output.float(), labels.float())
        return F.cross_entropy(output.float(), labels)

    def predict(self, output):
        return torch.sigmoid(output.float()) if self.binary else torch.softmax(output.float(), dim=-1)

    def tempered(self, predictions, temperature):
        """softmax(log p / T), sigmoid(logit p / T): the teacher's logits divided by T (its
        probabilities determine them up to a shift), T > 1 softer, T < 1 sharper."""
        if temperature == 1.0:
            return predictions
        if self.binary:
            p = np.clip(predictions, TINY, 1 - TINY)
            return 1 / (1 + np.exp(-np.log(p / (1 - p)) / temperature))
        logits = np.log(np.clip(predictions, TINY, 1)) / temperature
        logits -= logits.max(axis=-1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=-1, keepdims=True)

    def as_distribution(self, labels):
        if self.binary:
            return np.asarray(labels, dtype=np.float64)
        return np.eye(self.linear.out_features)[np.asarray(labels, dtype=np.int64)]

    def similar(self, labels):
        return [label == 1 for label in labels] if self.task.is_pair and self.binary else None

    @property
    def has_positive_pairs(self) -> bool:
        return self.task.is_pair and self.binary


class Regressor(Head):
    """A score in the declared range [low, high]: low + (high - low) * sigmoid(linear), or for a
    cosine pair low + (high - low) * cos(u, v); MSE; predictions clamped to the range."""

    label_dtype = torch.float32

    def __init__(self, task: Task, width: int, dropout: float):
        super().__init__(task, dropout)
        self.low, self.high = task.range
        self.cosine = task.head_is_cosine
        if not self.cosine:
            self.linear = nn.Linear(width, 1)

    def from_pooled(self, pooled):
        return self.low + (self.high - self.low) * torch.sigmoid(self.linear(self.dropout(pooled)).squeeze(-1))

    def from_pair(self, u, v):  # the cosine encoding: the only separate one a regression task has
        return self.low + (self.high - self.low) * F.cosine_similarity(u, v, dim=-1)

    def loss(self, output, labels):
        return F.mse_loss(output.float(), labels.float())

    def predict(self, output):
        return output.float().clamp(self.low, self.high)

    def similar(self, labels):
        if not self.task.is_pair:
            return None
        threshold = self.low + SIMILAR_FROM * (self.high - self.low)
        return [label >= threshold for label in labels]


def make_head(task: Task, width: int, dropout: float) -> Head:
    return (Regressor if task.is_regression else Classifier)(task, width, dropout)
