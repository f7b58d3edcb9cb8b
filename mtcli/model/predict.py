"""Torch-side prediction over a split: inputs, length-bucketed batches, order restored."""

from collections.abc import Sequence

import numpy as np
import torch

from mtcli.core.encoding import encode, length_order
from mtcli.core.errors import UserError
from mtcli.model.multitask import MultitaskModel


def resolve_device(name: str) -> torch.device:
    """--device auto|cpu|cuda as a torch device; cuda without a GPU is a user error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible to torch")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def torch_inputs(tokenizer, model: MultitaskModel, task: str, texts: Sequence[Sequence[str]],
                 device: torch.device | str) -> dict[str, torch.Tensor]:
    batch = encode(tokenizer, model.encoding(task), texts)
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict_texts(model: MultitaskModel, tokenizer, task: str, texts: Sequence[Sequence[str]], *,
                  batch_size: int = 64, device: torch.device | str = "cpu", labels=None) -> tuple[np.ndarray, float | None]:
    """Predictions (probabilities or scores) in input order, and the mean loss if labels are given."""
    model.eval()
    order = length_order(tokenizer, model.encoding(task), texts)
    outputs, loss_sum = [], 0.0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        with autocast:
            out = model(task, torch_inputs(tokenizer, model, task, [texts[i] for i in rows], device))
        if labels is not None:
            target = model.label_tensor(task, [labels[i] for i in rows], device)
            loss_sum += model.loss(task, out, target).item() * len(rows)
        outputs.append(model.predict(task, out).cpu().numpy())
    predictions = np.concatenate(outputs)[np.argsort(order)]
    return predictions, (loss_sum / len(texts) if labels is not None else None)


@torch.no_grad()
def embed_texts(model: MultitaskModel, tokenizer, sentences: Sequence[str], *, batch_size: int = 64,
                device: torch.device | str = "cpu") -> np.ndarray:
    """The encoder's pooled embedding of each sentence (float32), in input order."""
    model.eval()
    rows = [(s,) for s in sentences]
    order = length_order(tokenizer, "single", rows)
    parts = []
    for start in range(0, len(order), batch_size):
        batch = encode(tokenizer, "single", [rows[i] for i in order[start:start + batch_size]])
        inputs = {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}
        parts.append(model.encode("single", inputs).float().cpu().numpy())
    return np.concatenate(parts)[np.argsort(order)]
