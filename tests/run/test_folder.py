"""mtcli.run.folder: which options make a recipe, and what makes a saved configuration another
run, against literal configurations."""

from mtcli.run.folder import differences, enclosing_run_dir, is_run_dir, recipe_key

BASE = {"combine": "pcgrad", "sampler": "proportional", "lr": 5e-5, "seed": 0, "name": "a", "out": "/runs",
        "device": "cpu", "save_every": 0, "activation_checkpointing": False, "learning_rate": 5e-5}


def test_runs_differing_only_in_where_how_and_seed_are_one_recipe():
    other = {**BASE, "seed": 3, "name": "b", "out": "/elsewhere", "device": "cuda", "save_every": 50,
             "activation_checkpointing": True, "log_every": 20, "eval_every": 10}
    assert recipe_key(other) == recipe_key(BASE)
    assert recipe_key({**BASE, "combine": "sum"}) != recipe_key(BASE)
    assert recipe_key({**BASE, "lr": 1e-4}) != recipe_key(BASE)


def test_a_saved_configuration_is_another_run_by_what_it_trains_and_its_seed():
    moved = {**BASE, "name": "a2", "out": "/moved", "save_every": 10, "activation_checkpointing": True}
    assert differences(BASE, moved) == []   # where it went, and what may change on resume
    assert differences(BASE, {**BASE, "seed": 1, "combine": "sum"}) == ["combine", "seed"]
    assert differences(BASE, {**BASE, "device": "cuda"}) == ["device"]   # how it computes: not let go on resume
    assert differences({k: v for k, v in BASE.items() if k != "lr"}, BASE) == ["lr"]


def test_a_run_folder_is_known_by_its_config_beside_a_log_or_checkpoint(tmp_path):
    run = tmp_path / "runs" / "r"
    (run / "best").mkdir(parents=True)
    assert not is_run_dir(run)
    (run / "config.json").write_text("{}")
    assert is_run_dir(run) and enclosing_run_dir(run / "best") == run.resolve()
    assert enclosing_run_dir(tmp_path) is None
