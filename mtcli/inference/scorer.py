"""The Python scoring API: `from mtcli import Scorer`. Torch-free; `mtcli score` and
`mtcli eval --onnx` run through it.

    scorer = Scorer("export")                        # loads the export's manifest once
    scorer.score(task, [("A dog runs.", "A dog is running.")])   # a pair task: scores or P(label 1), shape (1,)
    scorer.score(task, ["What a film!"])             # a multiclass task: class probabilities, shape (1, C)
    scorer.embed(["A dog runs."])                    # pooled embeddings, shape (1, 384)

Anything the caller can get wrong (an unknown task, a bare string where a list of rows
belongs, a row of the wrong shape or type, an empty text, a batch size below 1) raises
`mtcli.UserError` with a message naming the argument (`rows[3]: ...`): the rules of
`mtcli score`, which runs on this class.

Rows go through in windows of WINDOW; inside a window they are sorted by token length so
batches pad little, and results come back in input order. A task whose head encodes the
two sentences separately (siamese, cosine) is scored a sentence at a time: each distinct
sentence of a window is encoded once (embed.onnx) and its embedding reused by every pair
it is in (the task's head graph), so one query against many candidates costs one
encoding of the query.
"""

import itertools
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mtcli.core.encoding import RUN_OVERHEAD_TOKENS, encode, length_batches, row_lengths
from mtcli.core.errors import UserError
from mtcli.core.fileio import check_regular
from mtcli.core.readers import not_unicode
from mtcli.core.tasks import Task
from mtcli.core.tokenizer import Tokenizer
from mtcli.core.paths import EXPORT_MANIFEST as MANIFEST
from mtcli.inference.manifest import PAIR_HEAD_INPUTS, check_graph, read_manifest, read_manifest_tasks

PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
WINDOW = 2048        # rows sorted by length (and deduplicated) together
BATCH_SIZE = 64


def make_session(path: Path, providers: Sequence[str] = ("cuda", "cpu"), threads: int | None = None,
                 profile: str | None = None):
    """An onnxruntime session of the graph at `path`, as scoring runs it. `profile`: a file prefix
    under which onnxruntime writes its per-node trace (bench/scoring_profile.py)."""
    import onnxruntime as ort

    unknown = [p for p in providers if p not in PROVIDERS]
    if unknown:
        raise UserError(f"--providers: unknown provider(s) {', '.join(unknown)}; expected cuda and/or cpu")
    available = ort.get_available_providers()
    chosen = [PROVIDERS[p] for p in providers if PROVIDERS[p] in available]
    if PROVIDERS["cpu"] not in chosen:
        chosen.append(PROVIDERS["cpu"])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # onnxruntime's idle worker threads spin by default, waiting for the next operator; between the
    # runs of a short window (tokenizing the next batch, a server's HTTP loop) they burn cores that
    # work needs. Off, measured on 2 cores (2026-12-02, in BENCHMARKS.md's history): 64-row windows 302-333 rows/s
    # against 269-290, long windows unchanged, `mtcli serve` as fast or faster on 0.1-0.2 fewer cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile is not None:
        options.enable_profiling, options.profile_file_prefix = True, profile
    check_regular(path, "ONNX graph")
    if not path.is_file():
        raise UserError(f"{path}: ONNX graph not found; re-run `mtcli export`")
    try:
        return ort.InferenceSession(str(path), options, providers=chosen)
    except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
        reason = str(e).strip().splitlines()[0][:200]
        raise UserError(f"{path}: cannot load the ONNX graph ({reason}); the file is corrupt: re-run `mtcli export`") from None


def parallelism(threads: int | None, sessions: int | None) -> tuple[int, int]:
    """(sessions, threads each) for scoring on this machine's cores. By default one session of one
    thread per core, each running its own batches: on 2 cores that scores 1.1-1.6x faster than one
    session of 2 threads (its threads synchronise at every operator of a small batch; two sessions
    never do, and one tokenizes while the other runs; BENCHMARKS.md "Two cores, used whole").
    `sessions` or `threads` given: the other fills the cores."""
    cores = os.cpu_count() or 1
    for name, value in (("--sessions", sessions), ("--threads", threads)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserError(f"{name} {value!r}: expected a whole number >= 1")
    if sessions is None:
        sessions = cores if threads is None else max(1, cores // threads)
    return sessions, threads if threads is not None else max(1, cores // sessions)


class Scorer:
    """An `mtcli export` folder, loaded once: scores rows of any exported task, embeds sentences.

    `sessions` onnxruntime sessions of `threads` threads each run a window's batches side by
    side (`parallelism`: by default one single-threaded session per core); on a GPU, one."""

    def __init__(self, model_dir: str | Path = "export", *, int8: bool = False,
                 providers: Sequence[str] = ("cuda", "cpu"), threads: int | None = None, dedup: bool = True,
                 sessions: int | None = None):
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        self.tasks: dict[str, Task] = read_manifest_tasks(self.model_dir, self.manifest)
        self.sessions, self.threads = parallelism(threads, sessions)
        self.int8, self.providers, self.dedup = int8, tuple(providers), dedup
        self._pool: ThreadPoolExecutor | None = None
        self.tokenizer = Tokenizer.from_dir(self.model_dir, max_length=self.manifest["max_length"])
        if "vocab_size" in self.manifest["encoder"]:   # every token a row of the graphs' embedding table
            self.tokenizer.check_vocabulary(self.manifest["encoder"]["vocab_size"], self.model_dir / MANIFEST)
        self._sessions: dict[str, list] = {}

    # ------------------------------------------------------------------ sessions

    def describe(self) -> str:
        """How this scorer runs onnxruntime, in a few words (what `mtcli score` says)."""
        return (f"{self.sessions} session{'s' if self.sessions > 1 else ''} of {self.threads} "
                f"thread{'s' if self.threads > 1 else ''}" + (", batches side by side" if self.sessions > 1 else ""))

    def _session(self, entry: dict, file_key: str = "file", inputs_key: str = "inputs"):
        """The first onnxruntime session of one graph of the manifest (`_sessions_of`)."""
        return self._sessions_of(entry, file_key, inputs_key)[0]

    def _sessions_of(self, entry: dict, file_key: str = "file", inputs_key: str = "inputs") -> list:
        """The onnxruntime sessions of one graph of the manifest, created (the first checked) on
        first use: `self.sessions` of them for a task's or the embedding's graph on the CPU, one on
        a GPU and for a pair head (cheap: never run side by side)."""
        if self.int8 and file_key == "file":
            if "int8_file" not in entry:
                raise UserError(f"{self.model_dir}: no int8 graphs; export with `mtcli export --quantize int8`")
            file_key = "int8_file"
        file = entry[file_key]
        if file not in self._sessions:
            session = make_session(self.model_dir / file, self.providers, self.threads)
            check_graph(session, entry, self.model_dir / file, inputs_key)
            if inputs_key == "inputs":
                self._probe(session, entry, self.model_dir / file)
            more = self.sessions - 1 if inputs_key == "inputs" and _on_cpu(session) else 0
            self._sessions[file] = [session] + [make_session(self.model_dir / file, self.providers, self.threads)
                                                for _ in range(more)]
        return self._sessions[file]

    def _probe(self, session, entry: dict, graph: Path) -> None:
        """Run one row of the manifest's max_length tokens: a graph whose position table is shorter
        (a manifest edited to a longer max_length) fails here, not in the middle of scoring."""
        import onnxruntime as ort

        length = self.manifest["max_length"]
        ones = np.ones((1, length), dtype=np.int64)
        feed = {name: (ones if name.startswith("attention_mask") else np.zeros_like(ones)) for name in entry["inputs"]}
        quiet = ort.RunOptions()
        quiet.log_severity_level = 4  # the failure is said below, in one line
        try:
            session.run([entry["output"]], feed, quiet)
        except Exception:  # onnxruntime's own error types
            raise UserError(f"{graph}: does not take rows of {length} tokens, the manifest's max_length: graph and "
                            f"manifest do not belong together: re-run `mtcli export`") from None

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            raise UserError(f"unknown task {name!r}; the export in {self.model_dir} has {', '.join(self.tasks)}")
        return self.tasks[name]

    # ------------------------------------------------------------------ the API

    def score(self, task: str, rows: Iterable, *, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Predictions for `rows` (sentences, or (sentence1, sentence2) pairs), in input order:
        class probabilities (N, C) for multiclass tasks, P(label 1) (N,) for binary ones, the
        score (N,) for regression."""
        spec = self.task(task)
        _check_batch_size(batch_size)
        parts = [self.score_window(task, window, batch_size) for window in _windows(rows, len(spec.text))]
        if not parts:
            shape = (0, len(spec.labels)) if spec.kind == "multiclass" else (0,)
            return np.zeros(shape, dtype=np.float32)
        return np.concatenate(parts)

    def embed(self, sentences: Iterable[str], *, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """The encoder's pooled embedding of each sentence, (N, d), in input order."""
        _check_batch_size(batch_size)
        parts = [self._embed([row[0] for row in window], batch_size) for window in _windows(sentences, 1)]
        return np.concatenate(parts) if parts else np.zeros((0, self.manifest["embedding"]["dim"]), dtype=np.float32)

    # ------------------------------------------------------------------ one window

    def score_window(self, task: str, texts: Sequence[tuple[str, ...]], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """One window of rows (tuples of texts, checked as `score` checks them), already materialised."""
        spec = self.task(task)
        _check_batch_size(batch_size)
        if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
            raise UserError(f"texts: expected a list of rows, got {type(texts).__name__}")
        texts = [as_texts(row, len(spec.text), i) for i, row in enumerate(texts)]
        entry = self.manifest["tasks"][task]
        if self.dedup and entry["encoding"] == "separate":
            return self._score_pairs_by_sentence(entry, texts, batch_size)
        return self._run_length_sorted(entry, entry["encoding"], texts, batch_size)

    def _run_length_sorted(self, entry: dict, encoding: str, rows: Sequence[tuple[str, ...]], batch_size: int) -> np.ndarray:
        """One graph over the rows in batches of similar token length, the batches shared out among
        the graph's sessions (each tokenizes its batch, then runs it); the outputs in input order."""
        sessions = self._sessions_of(entry)
        lengths = row_lengths(self.tokenizer, encoding, rows)
        order = np.argsort(lengths, kind="stable")
        device = "cpu" if _on_cpu(sessions[0]) else "cuda"
        batches = [order[part] for part in length_batches(lengths[order], batch_size, RUN_OVERHEAD_TOKENS[device])]
        free: queue.SimpleQueue = queue.SimpleQueue()
        for session in sessions:
            free.put(session)

        def run(indices: np.ndarray) -> np.ndarray:
            batch = encode(self.tokenizer, encoding, [rows[i] for i in indices])
            session = free.get()
            try:
                return session.run([entry["output"]], {name: batch[name] for name in entry["inputs"]})[0]
            except Exception as e:   # onnxruntime's own error types: a graph that does not fit its tokenizer
                graph = self.model_dir / entry["int8_file" if self.int8 else "file"]
                reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
                raise UserError(f"{graph}: onnxruntime cannot run it on these rows ({reason}); graph, tokenizer and "
                                f"manifest do not belong together: re-run `mtcli export`") from None
            finally:
                free.put(session)

        if len(sessions) == 1 or len(batches) == 1:
            parts = [run(indices) for indices in batches]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.sessions, thread_name_prefix="mtcli-score")
            parts = list(self._pool.map(run, batches))
        return np.concatenate(parts)[np.argsort(order)]

    def _score_pairs_by_sentence(self, entry: dict, texts: Sequence[tuple[str, ...]], batch_size: int) -> np.ndarray:
        """Each distinct sentence of the window encoded once; the head graph on every pair's two embeddings."""
        index: dict[str, int] = {}
        sides = np.array([[index.setdefault(text, len(index)) for text in row] for row in texts], dtype=np.int64)
        embeddings = self._embed(list(index), batch_size)
        head = self._session(entry, "head_file", "head_inputs")
        parts = []
        for start in range(0, len(texts), 4 * batch_size):  # the head is cheap: larger batches
            rows = sides[start:start + 4 * batch_size]
            feed = dict(zip(PAIR_HEAD_INPUTS, (embeddings[rows[:, 0]], embeddings[rows[:, 1]])))
            parts.append(head.run([entry["output"]], feed)[0])
        return np.concatenate(parts)

    def _embed(self, sentences: Sequence[str], batch_size: int) -> np.ndarray:
        return self._run_length_sorted(self.manifest["embedding"], "single", [(s,) for s in sentences], batch_size)


def _on_cpu(session) -> bool:
    return session.get_providers()[0] != PROVIDERS["cuda"]


def _check_batch_size(batch_size) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise UserError(f"batch_size: expected a whole number >= 1, got {batch_size!r}")


def _windows(rows: Iterable, arity: int):
    """The rows as lists of up to WINDOW text tuples (memory bounded for any iterable)."""
    if isinstance(rows, (str, bytes)):
        example = "['A dog runs.']" if arity == 1 else "[('A dog runs.', 'A dog is running.')]"
        raise UserError(f"rows: expected a list of rows, got a {type(rows).__name__}; wrap one row in a list, "
                        f"e.g. {example}")
    try:
        rows = iter(rows)
    except TypeError:
        raise UserError(f"rows: expected a list (or any iterable) of rows, got {type(rows).__name__}") from None
    start = 0
    while window := [as_texts(row, arity, start + i) for i, row in enumerate(itertools.islice(rows, WINDOW))]:
        start += len(window)
        yield window


def as_texts(row, arity: int, index: int) -> tuple[str, ...]:
    """A row as a tuple of `arity` non-empty texts: a sentence may come bare, a pair as any
    2-sequence. The same rules as `mtcli score` (an empty or blank text is refused)."""
    shape = "a sentence (str)" if arity == 1 else "a (sentence1, sentence2) pair of str"
    if isinstance(row, str):
        texts = (row,)
    elif isinstance(row, Sequence) and not isinstance(row, bytes):
        texts = tuple(row)
    else:
        raise UserError(f"rows[{index}]: expected {shape}, got {type(row).__name__}")
    if len(texts) != arity or not all(isinstance(t, str) for t in texts):
        got = f"{len(texts)} items" if len(texts) != arity else ", ".join(type(t).__name__ for t in texts)
        raise UserError(f"rows[{index}]: expected {shape}, got {got}")
    if any(not t or t.isspace() for t in texts):  # (no stripped copy of a long text)
        raise UserError(f"rows[{index}]: empty text; every text needs at least one non-blank character")
    for j, text in enumerate(texts):
        problem = not_unicode(text)
        if problem:
            raise UserError(f"rows[{index}]" + (f"[{j}]" if arity == 2 else "") + f": {problem}")
    return texts
