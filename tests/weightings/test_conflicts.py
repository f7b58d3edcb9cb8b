"""Pairwise cosines and the conflicting share, from the Gram matrix, by hand."""

import numpy as np
import pytest
import torch

from mtcli.weightings import kernel
from mtcli.weightings.conflicts import conflict_stats


def test_conflict_stats_from_gram():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 2.0]])
    stats = conflict_stats(kernel.gram(g))
    assert stats["cosine"][(0, 1)] == pytest.approx(-1 / np.sqrt(2))
    assert stats["cosine"][(0, 2)] == pytest.approx(0.0)
    assert stats["conflict_fraction"] == pytest.approx(1 / 3)
