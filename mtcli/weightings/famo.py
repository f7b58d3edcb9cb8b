"""Fast adaptive multitask optimization (Liu et al. 2023, FAMO; TorchJD's `FAMO`): task logits z
give weights softmax(z); the step minimises the weighted log losses,

    f(L) = sum_k (w_k / c) log(L_k - m_k + eps),   w = softmax(z),   c = sum_k w_k / (L_k - m_k + eps)

(w and c held constant), and after the update, from the same batches' losses L', the logits
take one Adam step (lr, weight_decay) along the gradient of softmax(z) weighted by the
decrease of the log losses, log(L - m + eps) - log(L' - m + eps): one extra forward per step.
m (the tasks' minimal losses) is 0. The logits, their Adam state and the last losses are the
state; they never enter the model's optimizer.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import Field

from mtcli.weightings.base import LossWeighting

EPSILON = 1e-8


@dataclasses.dataclass
class FAMO(LossWeighting):
    name = "famo"
    needs_losses_after = True
    lr: Annotated[float, Field(ge=0)] = 0.025
    weight_decay: Annotated[float, Field(ge=0)] = 1e-3

    def __post_init__(self):
        import torch

        self.logits = torch.zeros(self.num_tasks, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logits], lr=self.lr, weight_decay=self.weight_decay)
        self.before = None

    def scalarize(self, losses, tasks):
        import torch

        self.before = losses.detach().double().cpu()
        weights = torch.softmax(self.logits.detach()[tasks], dim=-1).to(losses)
        shifted = losses + EPSILON
        normalizer = (weights / shifted).sum().detach()
        return ((weights / normalizer) * shifted.log()).sum()

    def after_step(self, losses, tasks):
        import torch

        delta = (self.before + EPSILON).log() - (losses.detach().double().cpu() + EPSILON).log()
        with torch.enable_grad():
            weights = torch.softmax(self.logits[tasks], dim=-1)
            (grad,) = torch.autograd.grad(weights, self.logits, grad_outputs=delta.to(weights.dtype))
        self.logits.grad = grad
        self.optimizer.step()
        self.logits.grad = None

    def state_dict(self):
        adam = self.optimizer.state_dict()
        return {"logits": self.logits.detach().tolist(),
                "adam": {k: {n: (v.tolist() if hasattr(v, "tolist") else v) for n, v in s.items()}
                         for k, s in adam["state"].items()},
                "before": None if self.before is None else self.before.tolist()}

    def load_state_dict(self, state):
        import torch

        with torch.no_grad():
            self.logits.copy_(torch.tensor(state["logits"], dtype=self.logits.dtype))
        adam = self.optimizer.state_dict()
        adam["state"] = {int(k): {n: torch.tensor(v, dtype=torch.float32) for n, v in s.items()}
                         for k, s in state["adam"].items()}
        self.optimizer.load_state_dict(adam)
        self.before = None if state["before"] is None else torch.tensor(state["before"], dtype=torch.float64)
