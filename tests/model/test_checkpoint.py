"""mtcli.model.checkpoint: a checkpoint stores the task declarations with the weights, loads
back to the same model, and is recognised as mtcli's (so only it is replaced)."""

import json
import shutil

import pytest
import torch

from mtcli.core.errors import UserError
from mtcli.model.checkpoint import checkpoint_files, checkpoint_tasks, load_checkpoint, save_checkpoint


def test_tasks_and_weights_round_trip(tiny_checkpoint, tmp_path):
    model, tokenizer, meta = load_checkpoint(tiny_checkpoint)
    assert list(model.tasks) == ["sst", "para", "sts"] and checkpoint_tasks(tiny_checkpoint) == model.tasks
    assert meta["tasks"][1]["encoding"] == "siamese" and meta["tasks"][2]["encoding"] == "cross"
    save_checkpoint(model, tokenizer, tmp_path / "copy")
    again, _, _ = load_checkpoint(tmp_path / "copy")
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    assert checkpoint_files(tmp_path / "copy") >= {"mtcli.json", "model.safetensors"}
    assert checkpoint_files(tmp_path) is None


def test_an_older_format_is_refused(tiny_checkpoint, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_checkpoint, old)
    meta = json.loads((old / "mtcli.json").read_text())
    meta["format_version"] = 1
    (old / "mtcli.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="re-train with this mtcli version"):
        load_checkpoint(old)
    assert checkpoint_files(old) is not None  # still mtcli's to replace
