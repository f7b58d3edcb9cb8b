"""Auxiliary training objectives from the seeds, each added to a task's loss (so PCGrad
sees it inside that task's gradient):

  simcse     unsupervised SimCSE (Gao et al. 2021): every sentence of the batch is encoded
             twice with different dropout masks; the two views of a sentence are positives,
             the other sentences in-batch negatives; InfoNCE at temperature 0.05.
  mnrl       multiple-negatives ranking loss on the positives of binary pair tasks (paraphrase):
             for positive pairs (a_i, b_i), b_i must score highest among all b_j for a_i
             (scaled cosine, CE).
  cosine     CosineEmbeddingLoss on the pooled embeddings of a pair task's pairs: 1 - cos for
             similar pairs (the head says which: label 1, or a score in the top 40% of the
             range, e.g. STS >= 3), max(0, cos - margin) otherwise.
  embed      (distillation, --distill-embeddings) MSE of the student's pooled embedding of each
             text of a row to its teacher's, through a learned projection where the widths
             differ (EmbeddingDistillation): sentence-transformers' distillation, per task.
"""

import torch
import torch.nn.functional as F
from torch import nn

from mtcli.core.encoding import encode
from mtcli.model.multitask import MultitaskModel

SIMCSE_TEMPERATURE = 0.05
MNRL_SCALE = 20.0


def _embed(model: MultitaskModel, tokenizer, sentences: list[str], device) -> torch.Tensor:
    batch = {k: torch.from_numpy(v).to(device) for k, v in encode(tokenizer, "single", [(s,) for s in sentences]).items()}
    return model.embed(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


def simcse_loss(model: MultitaskModel, tokenizer, sentences: list[str], device) -> torch.Tensor | None:
    sentences = list(dict.fromkeys(sentences))  # a sentence twice in a batch would be its own negative
    if len(sentences) < 2:
        return None
    views = _embed(model, tokenizer, sentences + sentences, device)  # dropout differs per row: two views
    z1, z2 = views[: len(sentences)], views[len(sentences):]
    similarity = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / SIMCSE_TEMPERATURE
    return F.cross_entropy(similarity.float(), torch.arange(len(sentences), device=similarity.device))


def mnrl_loss(model: MultitaskModel, tokenizer, pairs: list[tuple[str, str]], labels, device) -> torch.Tensor | None:
    positives = [pair for pair, label in zip(pairs, labels) if label == 1]
    if len(positives) < 2:
        return None
    u = _embed(model, tokenizer, [a for a, _ in positives], device)
    v = _embed(model, tokenizer, [b for _, b in positives], device)
    scores = MNRL_SCALE * F.cosine_similarity(u.unsqueeze(1), v.unsqueeze(0), dim=-1)
    return F.cross_entropy(scores.float(), torch.arange(len(positives), device=scores.device))


def cosine_embedding_loss(model: MultitaskModel, tokenizer, pairs: list[tuple[str, str]], similar: list[bool], device,
                          margin: float = 0.0) -> torch.Tensor:
    u = _embed(model, tokenizer, [a for a, _ in pairs], device)
    v = _embed(model, tokenizer, [b for _, b in pairs], device)
    target = torch.tensor([1.0 if s else -1.0 for s in similar], device=u.device)
    return F.cosine_embedding_loss(u.float(), v.float(), target, margin=margin)


def auxiliary_losses(config, model: MultitaskModel, tokenizer, task: str, texts, labels, device) -> dict[str, torch.Tensor]:
    """The configured extra objectives for one task batch, weighted, by name."""
    losses = {}
    if config.simcse > 0:
        loss = simcse_loss(model, tokenizer, [s for row in texts for s in row], device)
        if loss is not None:
            losses["simcse"] = config.simcse * loss
    head = model.head(task)
    if config.mnrl > 0 and head.has_positive_pairs:
        loss = mnrl_loss(model, tokenizer, texts, labels, device)
        if loss is not None:
            losses["mnrl"] = config.mnrl * loss
    similar = head.similar(labels)
    if config.cosine_embedding > 0 and similar is not None:
        losses["cosine"] = config.cosine_embedding * cosine_embedding_loss(
            model, tokenizer, texts, similar, device, margin=config.cosine_margin)
    return losses


class EmbeddingDistillation(nn.Module):
    """The student's sentence embeddings against its teachers': one linear projection to each
    teacher width that differs from the student's (none where they agree). It trains with the
    run at the heads' rate, is kept in last/ for --resume, and is no part of the model: a
    checkpoint's weights and its exports never hold it."""

    def __init__(self, student_width: int, teacher_widths):
        super().__init__()
        self.student_width = student_width
        self.projections = nn.ModuleDict({str(w): nn.Linear(student_width, w) for w in sorted(set(teacher_widths))
                                          if w != student_width})

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """MSE of (n, texts, student width) embeddings, projected, to the teacher's (n, texts, width)."""
        width = str(teacher.shape[-1])
        projected = self.projections[width](student) if width in self.projections else student
        return F.mse_loss(projected.float(), teacher.float())

    def embeddings_of(self, model: MultitaskModel, tokenizer, encoding: str, embedded, subset: list[int],
                      texts, device) -> torch.Tensor:
        """The student's embedding of each text of the rows `subset` of a batch, (n, texts, width):
        what the unit's forward pass already pooled (one sentence, or a pair encoded separately),
        or for a pair encoded jointly each sentence encoded on its own."""
        if encoding == "single":
            return embedded[subset].unsqueeze(1)
        if encoding == "separate":
            u, v = embedded
            return torch.stack([u[subset], v[subset]], dim=1)
        sentences = [sentence for j in subset for sentence in texts[j]]
        return _embed(model, tokenizer, sentences, device).reshape(len(subset), -1, self.student_width)
