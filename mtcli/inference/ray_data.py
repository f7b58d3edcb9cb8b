"""Batch scoring on Ray Data: `mtcli score TASK FILE --engine ray`, and a callable class for
your own Ray pipelines. Torch-free; needs the `ray` extra (`pip install "mtcli[ray]"`).

    import ray
    from mtcli.inference.ray_data import RayScorer

    ds = ray.data.read_parquet("s3://bucket/pairs/")        # any Ray Data source
    scored = ds.map_batches(RayScorer, fn_constructor_args=("export", task_name), batch_format="pandas",
                            compute=ray.data.ActorPoolStrategy(size=8))

Each actor loads the export once (one onnxruntime session per graph, one thread per actor
by default: Ray runs one actor per CPU) and scores pandas or pyarrow batches, adding the
prediction columns. The same code runs on a laptop (`ray.init()` starts a local cluster)
or on a multi-node cluster: start Ray on every node (`ray start --head` on one,
`ray start --address HEAD:6379` on the others), then pass `--ray-address HEAD:6379`
(or `ray.init(address=...)`); the input path must be readable from every node (a shared
file system, or s3:// and the like), the output is written by the driver.
"""

import time
from pathlib import Path

import numpy as np

from mtcli.core.errors import DataError, UserError
from mtcli.core.fileio import output_stream
from mtcli.core.tsv import TsvWriter, open_binary
from mtcli.inference.score import ScoreStats, output_header, output_rows, refuse_input_as_output, score_items
from mtcli.inference.scorer import WINDOW, Scorer

BAD = "_mtcli_bad"          # per row: the reason it cannot be scored ("" when it can)
PREDICTION = "_mtcli_p"     # prediction columns: _mtcli_p0 ... for class probabilities
LINE, ID, TEXT = "_mtcli_line", "_mtcli_id", "_mtcli_text"   # what ScoreInput gives each row

try:  # the base class of a Ray Data source; without Ray, score_file_ray says how to install it
    from ray.data import Datasource
except ImportError:
    Datasource = object


def quiet_ray() -> None:
    """Keep Ray's own narration (cluster start, execution plans, advice) off the user's terminal,
    where mtcli prints its one-line results and errors; Ray's logs stay in its session folder."""
    import logging
    import warnings

    for name in ("ray", "ray.data", "ray.tune", "ray.serve"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray(\.|$)")


class RayScorer:
    """A Ray Data callable class: one Scorer per actor; `__call__` scores one batch.

    `text_columns` name the batch's text columns (default: the task's declared ones). The
    batch comes back with the prediction columns added (`_mtcli_p`, or `_mtcli_p0` ...
    `_mtcli_p{C-1}` for class probabilities) and `_mtcli_bad`, the reason a row could not
    be scored (an empty text, or the reason the reader already gave) or ""."""

    def __init__(self, model_dir: str, task: str, text_columns: list[str] | None = None, *, int8: bool = False,
                 providers: tuple[str, ...] = ("cpu",), threads: int = 1):
        self.scorer = Scorer(model_dir, int8=int8, providers=providers, threads=threads)
        self.task = self.scorer.task(task)
        self.columns = list(text_columns or self.task.text)

    def __call__(self, batch):
        import pandas as pd

        frame = batch if isinstance(batch, pd.DataFrame) else batch.to_pandas()
        texts = [tuple("" if v is None or v != v else str(v).strip() for v in row)  # v != v: pandas' NaN
                 for row in zip(*(frame[c].tolist() for c in self.columns))]
        given = frame[BAD].tolist() if BAD in frame else [""] * len(texts)
        bad = np.array([reason or ("" if all(row) else "empty text") for reason, row in zip(given, texts)], dtype=object)
        good = [i for i, reason in enumerate(bad) if not reason]
        width = len(self.task.labels) if self.task.kind == "multiclass" else 1
        predictions = np.full((len(texts), width), np.nan, dtype=np.float32)
        if good:
            scored = self.scorer.score(self.task.name, [texts[i] for i in good])
            predictions[good] = scored.reshape(len(good), width)
        frame = frame.copy()
        frame[BAD] = bad
        if width == 1:
            frame[PREDICTION] = predictions[:, 0]
        for c in range(width if width > 1 else 0):
            frame[f"{PREDICTION}{c}"] = predictions[:, c]
        return frame


def _no_restarts() -> dict:
    return {"max_restarts": 0}


def _map_without_restarts(dataset, fn, **options):
    """map_batches with actors that do not restart: a failed actor fails the command, said in one
    line, where restartable ones make Ray's core print a warning on the terminal at every run.
    (Ray deprecates passing actor options this way for a later release: there, the defaults.)"""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return dataset.map_batches(fn, ray_remote_args_fn=_no_restarts, **options)
        except TypeError:
            return dataset.map_batches(fn, **options)


class ScoreInput(Datasource):
    """A score input file as a Ray Data source, read by the same reader as the local engine
    (mtcli.inference.score.score_items): the same rows, line numbers and reasons, in file
    order, in blocks of BLOCK rows streamed from one read task. Bad rows travel as rows with
    their reason in `_mtcli_bad` (and no texts), so the driver counts or raises them where the
    local engine would."""

    BLOCK = 4096

    def __init__(self, path: str, task, header: bool, columns: dict[str, str] | None):
        super().__init__()
        self.path, self.task, self.header, self.columns = path, task, header, columns

    def estimate_inmemory_data_size(self):
        return Path(self.path).stat().st_size

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None):
        from ray.data import ReadTask
        from ray.data.block import BlockMetadata

        metadata = BlockMetadata(num_rows=None, size_bytes=self.estimate_inmemory_data_size(), exec_stats=None,
                                 input_files=(self.path,))
        return [ReadTask(self._blocks, metadata)]

    def _blocks(self):
        import pandas as pd

        names = [f"{TEXT}{i}" for i in range(len(self.task.text))]
        rows: list[list] = []
        with open_binary(self.path) as stream:
            for item in score_items(stream, self.path, self.task, header=self.header, columns=self.columns):
                texts = item.texts or ("",) * len(names)
                rows.append([item.line, item.id or "", item.error.problem if item.error else "", *texts])
                if len(rows) == self.BLOCK:
                    yield pd.DataFrame(rows, columns=[LINE, ID, BAD, *names])
                    rows = []
        if rows:
            yield pd.DataFrame(rows, columns=[LINE, ID, BAD, *names])


def score_file_ray(task_name: str, input_path: str, output_path: str | None, *, model_dir="export",
                   workers: int = 2, address: str | None = None, on_error: str = "fail",
                   providers=("cpu",), quantized: bool = False, batch_size: int = WINDOW, header: bool = True,
                   columns: dict[str, str] | None = None) -> ScoreStats:
    """`mtcli score --engine ray`: the input read as a Ray Data source by the local engine's own
    reader, scored by `workers` actors, written by the driver in input order, in the same
    format, with the same rows counted or refused as the single-process CLI."""
    try:
        import ray
    except ImportError:
        raise UserError('--engine ray needs Ray Data: pip install "mtcli[ray]" (ray[data])') from None
    if input_path == "-":
        raise UserError("--engine ray reads a file (the read task must reach it), not stdin")
    if on_error not in ("fail", "skip"):
        raise UserError(f"--on-error {on_error!r} is not one of fail, skip")
    if workers < 1:
        raise UserError("--workers must be at least 1")
    refuse_input_as_output(input_path, output_path)
    scorer = Scorer(model_dir, int8=quantized, providers=providers)  # the manifest, checked before Ray starts
    task = scorer.task(task_name)
    with open_binary(input_path) as stream:  # the layout's problems, said before Ray starts (as locally)
        next(score_items(stream, input_path, task, header=header, columns=columns), None)

    start = time.perf_counter()
    stats = ScoreStats()
    quiet_ray()
    if not ray.is_initialized():
        # a local cluster: one CPU per scoring actor, and one for the read task (else it waits forever)
        ray.init(address=address, num_cpus=None if address else workers + 1, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # output rows in input order
    context.enable_progress_bars = False

    source = ScoreInput(str(Path(input_path).resolve()), task, header, columns)
    text_columns = [f"{TEXT}{i}" for i in range(len(task.text))]
    scored = _map_without_restarts(
        ray.data.read_datasource(source), RayScorer,
        fn_constructor_args=(str(Path(model_dir).resolve()), task.name, text_columns),
        fn_constructor_kwargs={"int8": quantized, "providers": tuple(providers)},
        compute=ray.data.ActorPoolStrategy(size=workers), batch_size=batch_size, batch_format="pandas")
    width = len(task.labels) if task.kind == "multiclass" else 1
    prediction_columns = [PREDICTION] if width == 1 else [f"{PREDICTION}{c}" for c in range(width)]
    try:
        with output_stream(output_path) as out:
            writer = TsvWriter(out)
            writer.writerow(output_header(task))
            for batch in scored.iter_batches(batch_format="pandas", batch_size=None):
                keep = []
                for i, (line, reason) in enumerate(zip(batch[LINE].tolist(), batch[BAD].tolist())):
                    if not reason:
                        keep.append(i)
                        continue
                    error = DataError(input_path, int(line), reason)
                    if on_error == "fail":
                        raise error
                    stats.skipped.append(error)
                predictions = batch[prediction_columns].to_numpy(dtype=np.float32)[keep]
                ids = batch[ID].tolist()
                writer.writerows(output_rows(task, [ids[i] for i in keep],
                                             predictions[:, 0] if width == 1 else predictions))
                stats.rows += len(keep)
    except Exception as e:  # Ray wraps the workers' errors
        if isinstance(e, (UserError, OSError)):
            raise
        reason = str(e).strip().splitlines()[-1][:300]
        raise DataError(input_path, None, f"scoring on Ray failed ({reason})") from None
    stats.seconds = time.perf_counter() - start
    return stats
