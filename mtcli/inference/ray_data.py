"""Batch scoring on Ray Data: `mtcli score TASK FILE --engine ray`, and a callable class for
your own Ray pipelines. Torch-free; needs the `ray` extra (`pip install "mtcli[ray]"`).

    import ray
    from mtcli.inference.ray_data import RayScorer

    ds = ray.data.read_csv("s3://bucket/pairs/", parse_options=...)        # any Ray Data source
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
from mtcli.core.tsv import TsvWriter, iter_rows, open_binary
from mtcli.inference.score import ScoreStats, detect_layout, output_header, output_rows, refuse_input_as_output
from mtcli.inference.scorer import WINDOW, Scorer

BAD = "_mtcli_bad"          # per row: the reason it cannot be scored ("" when it can)
PREDICTION = "_mtcli_p"     # prediction columns: _mtcli_p0 ... for class probabilities


class RayScorer:
    """A Ray Data callable class: one Scorer per actor; `__call__` scores one batch.

    `text_columns` name the batch's text columns (default: the task's declared ones). The
    batch comes back with the prediction columns added (`_mtcli_p`, or `_mtcli_p0` ...
    `_mtcli_p{C-1}` for class probabilities) and `_mtcli_bad`, the reason a row could not
    be scored (an empty text) or ""."""

    def __init__(self, model_dir: str, task: str, text_columns: list[str] | None = None, *, int8: bool = False,
                 providers: tuple[str, ...] = ("cpu",), threads: int = 1):
        self.scorer = Scorer(model_dir, int8=int8, providers=providers, threads=threads)
        self.task = self.scorer.task(task)
        self.columns = list(text_columns or self.task.text)

    def __call__(self, batch):
        import pandas as pd

        frame = batch if isinstance(batch, pd.DataFrame) else batch.to_pandas()
        texts = [tuple("" if v is None else str(v).strip() for v in row)
                 for row in zip(*(frame[c].tolist() for c in self.columns))]
        bad = np.array(["" if all(row) else "empty text" for row in texts], dtype=object)
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


def _skip_row(row) -> str:  # pyarrow's handler for a row with the wrong number of fields (runs in Ray workers)
    return "skip"


def _fail_row(row) -> str:
    return "error"


def score_file_ray(task_name: str, input_path: str, output_path: str | None, *, model_dir="export",
                   workers: int = 2, address: str | None = None, on_error: str = "fail",
                   providers=("cpu",), quantized: bool = False, batch_size: int = WINDOW) -> ScoreStats:
    """`mtcli score --engine ray`: the input read by Ray Data, scored by `workers` actors, written
    by the driver in input order, in the same format as the single-process CLI."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import ray
    except ImportError:
        raise UserError('--engine ray needs Ray Data: pip install "mtcli[ray]" (ray[data])') from None
    if input_path == "-":
        raise UserError("--engine ray reads a file (every worker must reach it), not stdin")
    if workers < 1:
        raise UserError("--workers must be at least 1")
    refuse_input_as_output(input_path, output_path)
    scorer = Scorer(model_dir, int8=quantized, providers=providers)  # the manifest, checked before Ray starts
    task = scorer.task(task_name)
    with open_binary(input_path) as stream:  # the layout, detected exactly as the single-process CLI does
        first = next(iter_rows(stream, input_path), None)
    if first is None:
        raise DataError(input_path, None, "file is empty; expected TSV rows (with or without a header)")
    layout = detect_layout(first[1], task, input_path)
    names = [h.strip() for h in first[1]] if layout.has_header else [f"column{i}" for i in range(layout.width)]
    if len(set(names)) != len(names):
        raise DataError(input_path, 1, "header names a column twice; name each column once")
    text_columns = [names[c] for c in layout.text_columns]

    start = time.perf_counter()
    stats = ScoreStats()
    if not ray.is_initialized():
        # a local cluster: one CPU per scoring actor, and one for the read tasks (else they wait forever)
        ray.init(address=address, num_cpus=None if address else workers + 1, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # output rows in input order
    context.enable_progress_bars = False

    dataset = ray.data.read_csv(
        str(Path(input_path).resolve()),
        read_options=pacsv.ReadOptions(column_names=None if layout.has_header else names),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char='"', double_quote=True, newlines_in_values=True,
                                         invalid_row_handler=_skip_row if on_error == "skip" else _fail_row),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                                             quoted_strings_can_be_null=False),
    )
    scored = dataset.map_batches(RayScorer, fn_constructor_args=(str(Path(model_dir).resolve()), task.name, text_columns),
                                 fn_constructor_kwargs={"int8": quantized, "providers": tuple(providers)},
                                 compute=ray.data.ActorPoolStrategy(size=workers), batch_size=batch_size,
                                 batch_format="pandas")
    width = len(task.labels) if task.kind == "multiclass" else 1
    first_line = 2 if layout.has_header else 1
    try:
        with output_stream(output_path) as out:
            writer = TsvWriter(out)
            writer.writerow(output_header(task))
            for batch in scored.iter_batches(batch_format="pandas", batch_size=None):
                numbers = np.arange(stats.rows + len(stats.skipped), stats.rows + len(stats.skipped) + len(batch))
                ids = batch[names[layout.id_column]].tolist() if layout.id_column is not None else \
                    [str(first_line + n) for n in numbers]
                keep = []
                for i, (row_id, reason) in enumerate(zip(ids, batch[BAD])):
                    if not reason:
                        keep.append(i)
                    elif on_error == "fail":
                        raise DataError(input_path, None, f"row {row_id!r}: {reason}")
                    else:
                        stats.skipped.append(DataError(input_path, None, f"row {row_id!r}: {reason}"))
                columns = [PREDICTION] if width == 1 else [f"{PREDICTION}{c}" for c in range(width)]
                predictions = batch[columns].to_numpy(dtype=np.float32)[keep]
                writer.writerows(output_rows(task, [ids[i] for i in keep], predictions[:, 0] if width == 1 else predictions))
                stats.rows += len(keep)
    except Exception as e:  # Ray wraps the parser's and the workers' errors
        if isinstance(e, (UserError, OSError)):
            raise
        reason = str(e).strip().splitlines()[-1][:300]
        raise DataError(input_path, None, f"cannot be read as TSV by Ray Data ({reason})") from None
    stats.seconds = time.perf_counter() - start
    return stats
