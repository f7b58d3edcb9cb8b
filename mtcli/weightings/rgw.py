"""Random gradient weighting (Lin et al. 2022, RGW; TorchJD's aggregation `Random`): every step,
the task gradients are weighted by softmax of standard normal samples, g = sum_k w_k g_k,
w = softmax(z), z ~ N(0, I); drawn from a generator seeded by --seed (state saved).
"""

from __future__ import annotations

import dataclasses

from mtcli.weightings.base import Weighting


@dataclasses.dataclass
class RGW(Weighting):
    name = "rgw"
    seed: int = 0

    def __post_init__(self):
        import torch

        self.generator = torch.Generator().manual_seed(self.seed)

    def weights(self, gram, tasks):
        import torch

        z = torch.randn(len(gram), generator=self.generator)  # float32 draws, as TorchJD's
        return torch.softmax(z.double(), dim=-1).numpy()

    def state_dict(self):
        return {"generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state):
        import torch

        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
