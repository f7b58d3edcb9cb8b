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

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtcli.core.errors import DataError, UserError
from mtcli.core.fileio import read_json_dict, staged_dir, write_json
from mtcli.core.readers import DELIMITERS, detect_quoting, file_format, open_table
from mtcli.core.tsv import open_binary
from mtcli.inference.score import (ScoreStats, ScoreWriter, detect_layout, output_header, output_rows,
                                   refuse_input_as_output, score_items)
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
        self.scorer = Scorer(model_dir, int8=int8, providers=providers, threads=threads, sessions=1)   # one CPU an actor
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
    (mtcli.inference.score.score_items): the same rows, line (or row) numbers and reasons, in
    file order, in blocks of BLOCK rows streamed from one read task. Bad rows travel as rows
    with their reason in `_mtcli_bad` (and no texts), so the driver counts or raises them where
    the local engine would."""

    BLOCK = 4096

    def __init__(self, path: str, task, header: bool, columns: dict[str, str] | None, quoting: str):
        super().__init__()
        self.path, self.task, self.header, self.columns, self.quoting = path, task, header, columns, quoting

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
        stream = open_binary(self.path) if file_format(self.path) != "parquet" else contextlib.nullcontext()
        with stream as opened:
            for item in score_items(opened, self.path, self.task, header=self.header, columns=self.columns,
                                    quoting=self.quoting):
                texts = item.texts or ("",) * len(names)
                rows.append([item.line, item.id or "", item.error.problem if item.error else "", *texts])
                if len(rows) == self.BLOCK:
                    yield pd.DataFrame(rows, columns=[LINE, ID, BAD, *names])
                    rows = []
        if rows:
            yield pd.DataFrame(rows, columns=[LINE, ID, BAD, *names])


@dataclass
class _Source:
    """What the driver needs to know of a Ray input: its dataset, the columns holding texts
    and ids, and whether rows carry their numbers (else they are numbered in order)."""
    dataset: object
    text_columns: list[str]
    id_column: str | None
    numbered: bool
    unit: str


def _source(ray, input_path: str, task, header: bool, columns, quoting: str, on_note) -> _Source:
    """The input as a Ray dataset, its layout and its reading of quotes settled on the driver
    first (its problems said before anything runs, as the local engine says them). A Parquet
    file with an id column is read by Ray Data's own reader, in parallel; every other input
    by ScoreInput (mtcli's reader: its rows are numbered, and with no id column the numbers
    are the ids)."""
    kind = file_format(input_path)
    if kind in DELIMITERS and header and quoting == "auto":
        quoting, note = detect_quoting(input_path, DELIMITERS[kind])
        if note and on_note is not None:
            on_note(note)
    stream = open_binary(input_path) if kind != "parquet" else contextlib.nullcontext()
    with stream as opened:
        next(score_items(opened, input_path, task, header=header, columns=columns, quoting=quoting), None)
    path = str(Path(input_path).resolve())
    if kind == "parquet":
        table = open_table(input_path)
        layout = detect_layout(table.header, task, input_path, columns=columns, unit="row")
        if layout.id_column is not None:
            names = [table.header[i] for i in layout.text_columns]
            id_name = table.header[layout.id_column]
            return _Source(ray.data.read_parquet(path, columns=list(dict.fromkeys([id_name, *names]))), names,
                           id_name, numbered=False, unit="row")
    names = [f"{TEXT}{i}" for i in range(len(task.text))]
    return _Source(ray.data.read_datasource(ScoreInput(path, task, header, columns, quoting)), names, ID,
                   numbered=True, unit="row" if kind == "parquet" else "line")


def score_file_ray(task_name: str, input_path: str, output_path: str | None, *, model_dir="export",
                   workers: int = 2, address: str | None = None, on_error: str = "fail",
                   providers=("cpu",), quantized: bool = False, batch_size: int = WINDOW, header: bool = True,
                   columns: dict[str, str] | None = None, quoting: str = "auto", labels: str = "name",
                   on_note=None) -> ScoreStats:
    """`mtcli score --engine ray`: the input read as a Ray dataset, scored by `workers` actors,
    and written in input order in the single-process CLI's format, with the same rows counted
    or refused: TSV by the driver; Parquet (-o ending in .parquet) by Ray Data's writer, in
    parallel, as a folder of part files."""
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
    output = ScoreWriter(output_path, task, labels)

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

    source = _source(ray, input_path, task, header, columns, quoting, on_note)
    scored = _map_without_restarts(
        source.dataset, RayScorer, fn_constructor_args=(str(Path(model_dir).resolve()), task.name, source.text_columns),
        fn_constructor_kwargs={"int8": quantized, "providers": tuple(providers)},
        compute=ray.data.ActorPoolStrategy(size=workers), batch_size=batch_size, batch_format="pandas")
    try:
        if output.parquet:
            _write_parquet_dataset(scored.materialize(), source, task, output, stats, input_path, on_error)
        else:
            with output.open() as write:
                for batch in scored.iter_batches(batch_format="pandas", batch_size=None):
                    keep, ids = _account(batch, source, stats, input_path, on_error)
                    write(ids, _predictions(batch, task)[keep])
    except Exception as e:  # Ray wraps the workers' errors
        if isinstance(e, (UserError, OSError)):
            raise
        reason = str(e).strip().splitlines()[-1][:300]
        raise DataError(input_path, None, f"scoring on Ray failed ({reason})") from None
    stats.seconds = time.perf_counter() - start
    return stats


def _account(batch, source: _Source, stats: ScoreStats, input_path: str, on_error: str) -> tuple[list[int], list[str]]:
    """The batch's good rows (their positions and ids), in order; its bad ones counted (skip) or
    raised (fail), with the numbers the local engine gives them."""
    first = len(stats.skipped) + stats.rows + 1
    numbers = batch[LINE].tolist() if source.numbered else list(range(first, first + len(batch)))
    ids = batch[source.id_column].tolist() if source.id_column in batch else [None] * len(batch)
    keep, kept_ids = [], []
    for i, (number, reason) in enumerate(zip(numbers, batch[BAD].tolist())):
        if reason:
            error = DataError(input_path, int(number), reason, unit=source.unit)
            if on_error == "fail":
                raise error
            stats.skipped.append(error)
            continue
        keep.append(i)
        kept_ids.append(str(ids[i]) if ids[i] is not None and ids[i] != "" else str(number))
    stats.rows += len(keep)
    return keep, kept_ids


def _predictions(batch, task) -> np.ndarray:
    if task.kind == "multiclass":
        return batch[[f"{PREDICTION}{c}" for c in range(len(task.labels))]].to_numpy(dtype=np.float32)
    return batch[PREDICTION].to_numpy(dtype=np.float32)


def _output_frame(batch, *, task, id_column: str, labels: str):
    """A scored batch's good rows as score output columns (for Ray Data's Parquet writer)."""
    import pandas as pd

    keep = [i for i, reason in enumerate(batch[BAD].tolist()) if not reason]
    ids = batch[id_column].tolist()
    rows = output_rows(task, [None if ids[i] is None else str(ids[i]) for i in keep], _predictions(batch, task)[keep],
                       labels)
    return pd.DataFrame(list(rows), columns=output_header(task))


SCORES_MARK = "_mtcli_scores.json"   # what marks a Parquet folder as mtcli's score output (and lists its parts)


def scores_folder_files(folder: Path) -> set[str] | None:
    """The files of a Parquet score folder mtcli wrote, if `folder` is one (for staged_dir)."""
    mark = read_json_dict(folder / SCORES_MARK)
    if mark is None or mark.get("format") != "mtcli-scores" or not isinstance(mark.get("files"), list):
        return None
    return {SCORES_MARK, *(f for f in mark["files"] if isinstance(f, str))}


def _write_parquet_dataset(materialized, source: _Source, task, output, stats: ScoreStats, input_path: str,
                           on_error: str) -> None:
    """Account for every row first (the driver sees only their reasons), then let Ray Data write
    the good rows in parallel into a folder that replaces `output.path` whole."""
    import functools

    for batch in materialized.select_columns([BAD, *([LINE] if source.numbered else [])]).iter_batches(
            batch_format="pandas", batch_size=None):
        _account(batch, source, stats, input_path, on_error)
    with staged_dir(output.path, scores_folder_files, "an mtcli Parquet score folder") as staging:
        frames = materialized.map_batches(functools.partial(_output_frame, task=task, id_column=source.id_column,
                                                            labels=output.labels), batch_format="pandas")
        frames.write_parquet(str(staging))
        parts = sorted(p.name for p in staging.iterdir())
        write_json(staging / SCORES_MARK, {"format": "mtcli-scores", "files": parts, "rows": stats.rows,
                                           "columns": output_header(task)})
