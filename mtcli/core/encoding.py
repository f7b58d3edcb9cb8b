"""How a task's rows become model inputs: the one definition that training, eval,
export and scoring share. Torch-free.

Three encodings:
  single    one sentence:                  input_ids, attention_mask, token_type_ids
  joint     a pair in one sequence           [CLS] a [SEP] b [SEP], token types 0/1
  separate  a pair as two sequences          the same names with _a and _b suffixes,
            (siamese, cosine)                both padded to one width
"""

from collections.abc import Sequence
from typing import Literal

import numpy as np

from mtcli.core.tasks import Task

Encoding = Literal["single", "joint", "separate"]
FIELDS = ("input_ids", "attention_mask", "token_type_ids")
POOLINGS = ("cls", "mean")  # how the encoder's token states become one vector: [CLS], or the mask-aware mean


def encoding_for(task: Task) -> Encoding:
    """How a task's rows are encoded: one sentence; a pair in one sequence (the declared
    pair encoding `cross`); or a pair as two sequences (`siamese`, `cosine`)."""
    if not task.is_pair:
        return "single"
    return "joint" if task.encoding == "cross" else "separate"


def input_names(encoding: Encoding, token_types: bool = True) -> list[str]:
    """A graph's inputs under `encoding`; without token_type_ids for an encoder that has no token
    types (MPNet: its exported graphs do not take them)."""
    fields = FIELDS if token_types else tuple(f for f in FIELDS if f != "token_type_ids")
    if encoding == "separate":
        return [f"{name}_{side}" for side in ("a", "b") for name in fields]
    return list(fields)


def encode(tokenizer, encoding: Encoding, texts: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """Encode rows of texts ((sentence,) or (sentence1, sentence2)) for one batch."""
    if encoding == "single":
        return tokenizer.encode([row[0] for row in texts])
    if encoding == "joint":
        return tokenizer.encode([row[0] for row in texts], [row[1] for row in texts])
    both = tokenizer.encode([row[0] for row in texts] + [row[1] for row in texts])
    n = len(texts)
    return {**{f"{k}_a": v[:n] for k, v in both.items()}, **{f"{k}_b": v[n:] for k, v in both.items()}}


def row_lengths(tokenizer, encoding: Encoding, texts: Sequence[Sequence[str]]) -> np.ndarray:
    """Tokens each row takes under `encoding` (the longer side for separate encodings)."""
    if encoding == "single":
        return tokenizer.lengths([row[0] for row in texts])
    if encoding == "joint":
        return tokenizer.lengths([row[0] for row in texts], [row[1] for row in texts])
    return np.maximum(tokenizer.lengths([row[0] for row in texts]), tokenizer.lengths([row[1] for row in texts]))


def length_order(tokenizer, encoding: Encoding, texts: Sequence[Sequence[str]]) -> np.ndarray:
    """Row indices sorted by token length, so consecutive batches pad little; invert with argsort."""
    return np.argsort(row_lengths(tokenizer, encoding, texts), kind="stable")


# What one onnxruntime run costs beyond its tokens, in tokens: on CPU (MiniLM-L6, 2 cores:
# 1.5 ms a run, 0.077 ms a token) small batches are cheap and padding is not; on a GPU a run's
# launch costs thousands of tokens' time and padding little, so batches stay full.
RUN_OVERHEAD_TOKENS = {"cpu": 24, "cuda": 8192}


def length_batches(sorted_lengths: np.ndarray, max_rows: int, overhead: float = RUN_OVERHEAD_TOKENS["cpu"]) -> list[slice]:
    """Cut rows sorted by length into consecutive batches of at most `max_rows`, minimising the
    padded tokens computed plus `overhead` per batch (a batch costs rows x its longest row). A
    long sorted window gives full batches of near-equal lengths; a short window of mixed lengths
    (a server's batch of concurrent requests) gives smaller batches instead of padding every row
    to the longest. Exact, by dynamic programming over the cut points."""
    n = len(sorted_lengths)
    lengths = np.asarray(sorted_lengths, dtype=np.float64)
    best = np.zeros(n + 1)          # best[i]: the cheapest cost of the first i rows
    cut = np.zeros(n + 1, dtype=np.int64)
    for i in range(1, n + 1):
        starts = np.arange(max(0, i - max_rows), i)
        costs = best[starts] + overhead + (i - starts) * lengths[i - 1]
        k = int(np.argmin(costs))
        best[i], cut[i] = costs[k], starts[k]
    batches, i = [], n
    while i > 0:
        batches.append(slice(int(cut[i]), i))
        i = int(cut[i])
    return batches[::-1]


def token_lengths(batch: dict[str, np.ndarray]) -> np.ndarray:
    """Tokens per row (the longer side for separate encodings), for length bucketing."""
    masks = [v for k, v in batch.items() if k.startswith("attention_mask")]
    return np.max([m.sum(axis=1) for m in masks], axis=0)
