"""What the Gram matrix says about the task gradients: pairwise cosines and how many
pairs conflict (negative dot product). Logged every step; `mtcli report` reads them."""

from __future__ import annotations

import numpy as np


def conflict_stats(gram: np.ndarray) -> dict:
    """Cosine between every pair of task gradients and the fraction of pairs in conflict."""
    gram = np.asarray(gram, dtype=np.float64)
    norms = np.sqrt(np.clip(np.diag(gram), 0, None))
    pairs = [(i, j) for i in range(len(gram)) for j in range(i + 1, len(gram))]
    cosines = {(i, j): float(gram[i, j] / (norms[i] * norms[j])) if norms[i] * norms[j] > 0 else 0.0 for i, j in pairs}
    conflicts = sum(gram[i, j] < 0 for i, j in pairs)
    return {"cosine": cosines, "conflict_fraction": float(conflicts / len(pairs)) if pairs else 0.0}
