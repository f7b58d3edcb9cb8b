"""--log-to tensorboard,mlflow: every metrics.jsonl record mirrored, read back through each tool's
own reader; the recipe as the MLflow run's parameters; a resumed run logs on to its MLflow run."""

import json

import pytest
from rich.console import Console

from mtcli.core.errors import UserError
from mtcli.train import TrainConfig
from mtcli.train.tracking import flatten


def test_records_flatten_to_named_numbers():
    step, values = flatten("step", {"step": 3, "loss": {"sst": 1.5, "sts:simcse": 0.2}, "lr": 1e-4,
                                    "grad_cosine": {"sst/sts": -0.1}, "weights": {"sst": 0.5}, "epoch_progress": 0.1})
    assert step == 3 and values == {"loss/sst": 1.5, "loss/sts/simcse": 0.2, "lr": 1e-4, "grad_cosine/sst/sts": -0.1,
                                    "weight/sst": 0.5}
    _, values = flatten("epoch", {"step": 9, "dev": {"sts": {"pearson": 0.8, "spearman": None}}, "overall": 0.7,
                                  "train_loss": {"sts": 0.3}})
    assert values == {"dev/sts/pearson": 0.8, "dev/overall": 0.7, "train_loss/sts": 0.3}


def test_unknown_trackers_are_one_line_errors():
    with pytest.raises(UserError, match="--log-to 'wandb': expected tensorboard or mlflow"):
        TrainConfig(log_to=["wandb"])


def test_a_run_logs_to_tensorboard_and_mlflow(tmp_path, tiny_model_dir, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mtcli.train.loop import Trainer

    monkeypatch.chdir(tmp_path)   # the default store: ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    config = TrainConfig(model_dir=str(tiny_model_dir), out=str(tmp_path / "runs"), name="t", limit=16, batch_size=8,
                         epochs=1, log_to=["tensorboard", "mlflow"], combine="upgrad")
    run = Trainer(config, Console(quiet=True)).run()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]

    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/sst", "lr", "weight/sts", "dev/overall", "dev/sts/pearson"} <= tags
    assert [e.value for e in events.Scalars("loss/sst")] == pytest.approx([r["loss"]["sst"] for r in steps
                                                                          if "sst" in r["loss"]])

    client = MlflowClient(uri)
    run_id = json.loads((run / "tracking.json").read_text())["mlflow_run_id"]
    logged = client.get_run(run_id)
    assert logged.data.params["combine"] == "upgrad" and logged.data.params["batch-size"] == "8"
    epoch = next(r for r in records if r["type"] == "epoch")
    assert logged.data.metrics["dev/overall"] == pytest.approx(epoch["overall"])
    history = client.get_metric_history(run_id, "loss/sst")
    assert [m.step for m in history] == [r["step"] for r in steps if "sst" in r["loss"]]


@pytest.mark.parametrize("uri, message", [("relative/store", "not a tracking store MLflow can use"),
                                          ("bogus://x", "not a tracking store MLflow can use")])
def test_a_bad_tracking_uri_is_one_line_before_the_run_folder_exists(tmp_path, tiny_model_dir, monkeypatch, uri,
                                                                     message):
    pytest.importorskip("mlflow")
    from mtcli.train.loop import Trainer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    config = TrainConfig(model_dir=str(tiny_model_dir), out=str(tmp_path / "runs"), name="t", limit=16, batch_size=8,
                         max_steps=1, log_to=["mlflow"])
    with pytest.raises(UserError, match=f"MLFLOW_TRACKING_URI='{uri}': {message}"):
        Trainer(config, Console(quiet=True)).run()
    assert not (tmp_path / "runs" / "t").exists()


def test_a_tracking_store_that_does_not_answer_is_bounded(monkeypatch):
    pytest.importorskip("mlflow")
    import socket
    import time

    from mtcli.train.tracking import check_mlflow_store

    with socket.socket() as silent:   # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.perf_counter()
        with pytest.raises(UserError, match="did not answer within 2 s|not a tracking store"):
            check_mlflow_store(wait_s=2)
        assert time.perf_counter() - start < 10


def test_a_forged_mlflow_run_id_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mtcli.train.tracking import _MLflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "tracking.json").write_text(json.dumps({"mlflow_run_id": "0" * 32}))
    with pytest.raises(UserError, match="tracking.json: names MLflow run 0{32}, which the tracking store does not have"):
        _MLflow(run, {})
