"""mtcli.core.encoding: a task's declared pair encoding decides how its rows become inputs."""

from dataclasses import replace

import numpy as np

from conftest import builtin
from mtcli.core.encoding import encode, encoding_for, input_names, length_batches, row_lengths
from mtcli.core.tokenizer import Tokenizer


def test_encoding_follows_the_declaration():
    sst, para, sts = builtin().values()
    assert encoding_for(sst) == "single" and encoding_for(para) == "separate" and encoding_for(sts) == "separate"
    assert encoding_for(replace(para, encoding="cross")) == "joint"
    assert input_names("separate")[:3] == ["input_ids_a", "attention_mask_a", "token_type_ids_a"]


def test_three_encodings_of_the_same_rows(packaged_model_dir):
    tokenizer = Tokenizer.from_dir(packaged_model_dir)
    rows = [("a dog runs", "a cat sleeps soundly"), ("hi", "there")]
    joint = encode(tokenizer, "joint", rows)
    separate = encode(tokenizer, "separate", rows)
    single = encode(tokenizer, "single", [(a,) for a, _ in rows])
    assert set(joint) == set(input_names("joint")) and set(separate) == set(input_names("separate"))
    assert joint["token_type_ids"][0].max() == 1 and separate["token_type_ids_a"].max() == 0
    assert np.array_equal(separate["input_ids_a"][:, :single["input_ids"].shape[1]], single["input_ids"])
    assert separate["input_ids_a"].shape == separate["input_ids_b"].shape  # both sides padded to one width
    lengths = row_lengths(tokenizer, "separate", rows)
    assert list(lengths) == [max(separate["attention_mask_a"][i].sum(), separate["attention_mask_b"][i].sum())
                             for i in range(2)]


def _cheapest_by_enumeration(lengths, max_rows, overhead):
    """Every way to cut the sorted rows into consecutive batches (2^(n-1) of them), the cheapest."""
    import itertools

    n, best = len(lengths), None
    for cuts in itertools.product((False, True), repeat=n - 1):
        bounds = [0, *(i + 1 for i, c in enumerate(cuts) if c), n]
        parts = list(zip(bounds, bounds[1:]))
        if any(b - a > max_rows for a, b in parts):
            continue
        cost = sum(overhead + (b - a) * lengths[b - 1] for a, b in parts)
        best = cost if best is None else min(best, cost)
    return best


def test_length_batches_are_the_cheapest_cut_and_cover_every_row_once():
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(1, 11))
        lengths = np.sort(rng.integers(3, 129, size=n))
        max_rows, overhead = int(rng.integers(1, 6)), float(rng.choice([0, 8, 24, 500]))
        batches = length_batches(lengths, max_rows, overhead)
        assert [i for part in batches for i in range(n)[part]] == list(range(n))
        assert all(0 < part.stop - part.start <= max_rows for part in batches)
        cost = sum(overhead + (p.stop - p.start) * lengths[p.stop - 1] for p in batches)
        assert cost == _cheapest_by_enumeration(lengths, max_rows, overhead)


def test_length_batches_keep_full_batches_of_equal_lengths_and_split_mixed_ones():
    assert len(length_batches(np.full(130, 12), 64)) == 3            # as few runs as the cap allows
    mixed = np.array([8] * 16 + [60] * 16)
    assert length_batches(mixed, 64) == [slice(0, 16), slice(16, 32)]   # not 32 rows padded to 60
    assert length_batches(np.array([], dtype=int), 64) == []
