"""Recipe files: `mtcli train --config FILE`, every option a key named as its flag, flags on the
command line win, errors name the file, line and key; every run writes a recipe that trains it
again."""

import json
from pathlib import Path

import pytest

from conftest import REPO, run_cli, run_cli_here
from mtcli.core.errors import UserError
from mtcli.run.predictions import FILE as PREDICTIONS, read_dev_predictions
from mtcli.train import TrainConfig
from mtcli.train.recipe import field_keys, read_recipe, recipe_of, with_recipe


def _recipe(folder: Path, text: str) -> Path:
    path = folder / "recipe.toml"
    path.write_text(text)
    return path


def test_every_option_has_a_key_and_the_flags_spell_them():
    keys = field_keys()
    assert {"batch-size", "combine", "task-weights", "encoding", "cosine-embedding-loss", "max-steps"} <= set(keys)
    assert set(keys.values()) == {f for f in TrainConfig.__dataclass_fields__}
    help_text = run_cli("train", "--help").stdout.decode()
    for key in keys:
        assert f"--{key}" in help_text, key   # the key is the flag


def test_a_recipe_sets_options_and_the_command_line_wins(tmp_path):
    (tmp_path / "sub").mkdir()
    path = _recipe(tmp_path / "sub", 'combine = "cagrad:c=0.2"\nbatch-size = 8\nepochs = 2\n'
                                      'task-weights = {}\nencoding = { para = "cross" }\n'
                                      'cosine-embedding-loss = 0.5\ndata-dir = "data"\n')
    (tmp_path / "sub" / "data").mkdir()
    config = with_recipe(path, TrainConfig().__dict__ | {"epochs": 1}, given={"epochs"})
    assert (config.combine, config.batch_size, config.epochs) == ("cagrad:c=0.2", 8, 1)
    assert config.encodings == {"para": "cross"} and config.cosine_embedding == 0.5
    assert config.data_dir == str((tmp_path / "sub" / "data").resolve())   # paths: from the recipe's folder


def test_a_table_flag_goes_over_the_recipe_s_table_key_by_key(tmp_path):
    path = _recipe(tmp_path, 'encoding = { para = "cross", sts = "cross" }\nupsample = { sst = 2, sts = 3 }\n')
    options = TrainConfig().__dict__ | {"encodings": {"para": "siamese"}, "upsample": {"sts": 1}}
    config = with_recipe(path, options, given={"encodings", "upsample"})
    assert config.encodings == {"para": "siamese", "sts": "cross"}
    assert config.upsample == {"sst": 2, "sts": 1}


@pytest.mark.parametrize("key", ["out", "name"])
def test_a_recipe_says_what_is_trained_not_where(tmp_path, key):
    path = _recipe(tmp_path, f'epochs = 2\n{key} = "/home/colleague/runs"\n')
    with pytest.raises(UserError, match=f"recipe.toml:2: {key}: where a run goes is not part of its recipe"):
        with_recipe(path, TrainConfig().__dict__, given=set())
    config = TrainConfig(out=str(tmp_path / "elsewhere"), name="x")
    assert not {"out", "name"} & set(recipe_of(config))


@pytest.mark.parametrize("text, message", [
    ("batch_size = 8\n", "recipe.toml:1: batch_size: not a recipe key; did you mean 'batch-size'?"),
    ("\nepochs = 'three'\n", "recipe.toml:2: epochs: 'three' is not a whole number"),
    ("task-weights = { sst = 'half' }\n", "recipe.toml:1: task-weights: {'sst': 'half'} is not a table of numbers"),
    ("epochs = 2\n\nepochs = 3\n", "recipe.toml: not valid TOML"),
    ("dropout = 0.1\nepochs = 0\n", "recipe.toml:2: --epochs 0: must be at least 1"),
    ("combine = 'nope'\n", "recipe.toml:1: --combine 'nope': unknown weighting"),
])
def test_recipe_errors_name_the_file_line_and_key(tmp_path, text, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("?", r"\?").replace("{", r"\{")
                       .replace("}", r"\}").replace("[", r"\[")):
        with_recipe(_recipe(tmp_path, text), TrainConfig().__dict__, given=set())


def test_a_written_recipe_reads_back_to_the_same_configuration(tmp_path):
    config = TrainConfig(combine="weighted", task_weights={"sst": 0.5}, encodings={"sts": "cross"},
                         cosine_embedding=0.25, epochs=2, lr=1e-4, name="x", tasks=str(REPO / "examples/cs224n-cfimdb.toml"))
    import tomli_w

    path = _recipe(tmp_path, tomli_w.dumps(recipe_of(config)))
    values, _ = read_recipe(path)
    assert "name" not in values
    again = TrainConfig(**values)
    assert {**again.to_dict(), "name": "x"} == config.to_dict()


def test_every_run_writes_a_recipe_that_trains_it_again(tmp_path, tiny_model_dir):
    recipe = _recipe(tmp_path, f'model-dir = "{tiny_model_dir}"\nlimit = 16\nbatch-size = 8\nmax-steps = 2\n'
                               f'epochs = 1\ncombine = "upgrad"\nsampler = "temperature:tau=3"\n')
    first = run_cli("train", "--config", recipe, "--out", tmp_path / "runs", "--name", "a", "--seed", "3")
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    written = tmp_path / "runs" / "a" / "recipe.toml"
    kept = read_dev_predictions(tmp_path / "runs" / "a" / PREDICTIONS)   # the best epoch's, for mtcli compare
    assert kept.epoch == 1 and set(kept.labels) == {"sst", "para", "sts"} and kept.predictions["sst"].shape == (16, 5)
    again = run_cli("train", "--config", written, "--out", tmp_path / "runs", "--name", "b")
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    a, b = (json.loads((tmp_path / "runs" / n / "config.json").read_text()) for n in "ab")
    assert a.pop("name") == "a" and b.pop("name") == "b" and a == b and a["seed"] == 3 and a["combine"] == "upgrad"
    refused = run_cli_here("train", "--config", written, "--resume", tmp_path / "runs" / "a")
    assert refused.returncode == 2 and b"drop --config" in refused.stderr
