"""Experiment tracking: every record metrics.jsonl holds, mirrored to TensorBoard and/or MLflow
(`--log-to tensorboard,mlflow`), with the recipe as the run's parameters.

    tensorboard   event files in the run folder itself: `tensorboard --logdir runs` shows every run
    mlflow        the experiment "mtcli" (MLFLOW_EXPERIMENT_NAME overrides) in the tracking store
                  MLFLOW_TRACKING_URI names, by default ./mlruns/mlflow.db (a local SQLite file:
                  `mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`); the MLflow
                  run's id is kept in the run folder (tracking.json), so a resumed run logs on

Names: loss/<task>, lr, examples_per_s, conflict_fraction, grad_cosine/<a>/<b>, weight/<task> per
step; dev/<task>/<metric>, dev/overall and train_loss/<task> per epoch; eval/<task>, eval/overall
at every --eval-every evaluation. metrics.jsonl stays the record `mtcli report` and `compare`
read; the trackers are views of it. Both are optional extras (`pip install 'mtcli[tracking]'`).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from mtcli.core.errors import UserError, excerpt
from mtcli.core.fileio import read_json_dict, write_json
from mtcli.run.folder import TRACKING as IDS

TRACKERS = ("tensorboard", "mlflow")
MLFLOW_WAIT_S = 20   # how long the tracking store may take to answer the check before a run starts


def check_trackers(names: list[str]) -> None:
    """Known names whose packages are installed, or a UserError saying what to install."""
    for name in names:
        if name not in TRACKERS:
            raise UserError(f"--log-to {name!r}: expected {' or '.join(TRACKERS)} (comma-separated for both)")
        module = {"tensorboard": "tensorboard", "mlflow": "mlflow"}[name]
        try:
            __import__(module)
        except ImportError:
            raise UserError(f"--log-to {name} needs the {module} package: pip install 'mtcli[tracking]'") from None


def check_mlflow_store(wait_s: float = MLFLOW_WAIT_S) -> None:
    """The store MLFLOW_TRACKING_URI names answers a query, within `wait_s` seconds: asked before
    a run folder is made, so a bare path, an unknown scheme or an unreachable server is one
    line, not a traceback after the run started or a silent hang. (No URI: the local SQLite
    store, made when the run starts.) HTTP requests are bounded too, unless MLflow's own
    MLFLOW_HTTP_REQUEST_TIMEOUT / _MAX_RETRIES say otherwise."""
    import threading

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(wait_s)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    answer: list = []

    def ask() -> None:
        try:
            import mlflow

            mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
            answer.append(None)
        except Exception as e:   # MLflow raises what its stores and HTTP stack raise
            answer.append(e)

    asking = threading.Thread(target=ask, daemon=True, name="mtcli-mlflow-check")
    asking.start()
    asking.join(wait_s)
    fix = "fix or unset MLFLOW_TRACKING_URI (unset: a local SQLite store in ./mlruns)"
    if not answer:
        raise UserError(f"MLFLOW_TRACKING_URI={excerpt(uri)}: the tracking store did not answer within {wait_s:g} s; "
                        f"{fix}")
    if answer[0] is not None:
        problem = str(answer[0]).splitlines()[0] if str(answer[0]) else type(answer[0]).__name__
        raise UserError(f"MLFLOW_TRACKING_URI={excerpt(uri)}: not a tracking store MLflow can use "
                        f"({excerpt(problem, 160)}); {fix}")


def flatten(kind: str, record: dict) -> tuple[int | None, dict[str, float]]:
    """A metrics.jsonl record as (step, {name: number}) for the trackers."""
    values: dict[str, float] = {}

    def put(name: str, value) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            values[name] = float(value)

    if kind == "step":
        for task, loss in record.get("loss", {}).items():
            put(f"loss/{task.replace(':', '/')}", loss)
        for key in ("lr", "examples_per_s", "conflict_fraction"):
            put(key, record.get(key))
        for pair, cosine in record.get("grad_cosine", {}).items():
            put(f"grad_cosine/{pair}", cosine)
        for task, weight in record.get("weights", {}).items():
            put(f"weight/{task}", weight)
    elif kind == "epoch":
        for task, metrics in record.get("dev", {}).items():
            for metric, value in metrics.items():
                put(f"dev/{task}/{metric}", value)
        for task, loss in record.get("train_loss", {}).items():
            put(f"train_loss/{task.replace(':', '/')}", loss)
        put("dev/overall", record.get("overall"))
    elif kind == "eval":
        for task, value in record.get("headline", {}).items():
            put(f"eval/{task}", value)
        put("eval/overall", record.get("overall"))
    return record.get("step"), values


class Trackers:
    """The run's trackers; `write` takes what MetricsLog.write takes."""

    def __init__(self, names: list[str], run_dir: Path, params: dict):
        check_trackers(names)
        self.writers = []
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            self.writers.append(_TensorBoard(SummaryWriter(log_dir=str(run_dir)), params))
        if "mlflow" in names:
            self.writers.append(_MLflow(run_dir, params))

    def write(self, kind: str, **record) -> None:
        step, values = flatten(kind, record)
        if values:
            for writer in self.writers:
                writer.log(values, step or 0)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class _TensorBoard:
    def __init__(self, writer, params: dict):
        self.writer = writer
        writer.add_text("recipe", "\n".join(f"    {k} = {v}" for k, v in params.items()), 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, run_dir: Path, params: dict):
        import mlflow

        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):   # a local store: MLflow's SQLite file in ./mlruns
            Path("mlruns").mkdir(exist_ok=True)
            mlflow.set_tracking_uri(f"sqlite:///{Path('mlruns').resolve() / 'mlflow.db'}")
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "mtcli"))
        ids = read_json_dict(run_dir / IDS) or {}
        run_id = ids.get("mlflow_run_id")
        run_id = run_id if isinstance(run_id, str) and re.fullmatch(r"[0-9a-f]{32}", run_id) else None
        try:
            self.run = mlflow.start_run(run_id=run_id, run_name=run_dir.name) if run_id else \
                mlflow.start_run(run_name=run_dir.name)
        except mlflow.exceptions.MlflowException as e:
            if run_id is None:
                raise UserError(f"MLflow: cannot start a run ({excerpt(str(e).splitlines()[0], 160)})") from None
            raise UserError(f"{run_dir / IDS}: names MLflow run {run_id}, which the tracking store does not have "
                            f"({mlflow.get_tracking_uri()}); the file was edited, or the store is another: "
                            f"restore it or point MLFLOW_TRACKING_URI at the run's store") from None
        if run_id is None:
            write_json(run_dir / IDS, {"mlflow_run_id": self.run.info.run_id})
            mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})

    def log(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


class TrackedLog:
    """metrics.jsonl, and the trackers after it."""

    def __init__(self, log, trackers: Trackers):
        self.log, self.trackers = log, trackers

    def write(self, kind: str, **values) -> None:
        self.log.write(kind, **values)
        self.trackers.write(kind, **values)

    def close(self) -> None:
        self.log.close()
        self.trackers.close()
