"""mtcli.core.encoding: a task's declared pair encoding decides how its rows become inputs."""

from dataclasses import replace

import numpy as np

from conftest import builtin
from mtcli.core.encoding import encode, encoding_for, input_names, row_lengths
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
