"""Random loss weighting (Lin et al. 2022, "Reasonable Effectiveness of Random Weighting"): every
step, weights drawn as softmax of standard normal samples (TorchJD's scalarization `Random`),

    f(L) = sum_k w_k L_k,   w = softmax(z), z ~ N(0, I).

The draws come from a generator seeded by --seed whose state is saved for --resume.
"""

from __future__ import annotations

import dataclasses

from mtcli.weightings.base import LossWeighting


@dataclasses.dataclass
class RLW(LossWeighting):
    name = "rlw"
    seed: int = 0

    def __post_init__(self):
        import torch

        self.generator = torch.Generator().manual_seed(self.seed)

    def scalarize(self, losses, tasks):
        import torch

        z = torch.randn(len(tasks), generator=self.generator)  # float32 draws, as TorchJD's
        return (torch.softmax(z.to(losses.dtype), dim=-1).to(losses.device) * losses).sum()

    def state_dict(self):
        return {"generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state):
        import torch

        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
