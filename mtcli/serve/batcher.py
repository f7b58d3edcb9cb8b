"""Dynamic batching: rows of concurrent requests scored together. Torch-free.

Requests put jobs (a task's rows, or sentences to embed) on one queue. One loop takes the
first job; when nothing else is waiting it is scored at once (a lone request never waits
for a window); otherwise jobs are gathered up to `max_batch_tokens` tokens, waiting at most
`max_wait_ms` after the first job for more to arrive. A batch runs on a worker thread
(onnxruntime releases the GIL, so the event loop keeps accepting requests meanwhile), up to
`parallel` batches at once (each onnxruntime run then takes cores / parallel threads),
each task's rows through `Scorer.score_window` together — sorted by length there, the
sentences shared within the batch encoded once — and every job gets its own rows back,
in order. The queue holds at most `max_queue_rows` rows: beyond that `submit` raises
QueueFull (the HTTP layer answers 503 with Retry-After), never an unbounded queue.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from mtcli.inference.scorer import BATCH_SIZE   # rows per onnxruntime run inside a batch
from mtcli.serve.limits import Limits

EMBED = None  # the task of an embedding job


class QueueFull(Exception):
    """The queue holds its maximum of rows; the request may be retried later."""


class ShuttingDown(Exception):
    """The server stops: no new work is taken."""


@dataclass
class Job:
    task: str | None                  # None: embed the sentences
    rows: list[tuple[str, ...]]
    tokens: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, scorer, *, max_batch_tokens: int = Limits.max_batch_tokens,
                 max_wait_ms: float = Limits.max_wait_ms, max_queue_rows: int = Limits.max_queue_rows,
                 parallel: int = Limits.parallel_batches, metrics=None):
        self.scorer, self.metrics = scorer, metrics
        self.max_batch_tokens, self.max_wait = max_batch_tokens, max_wait_ms / 1000
        self.max_queue_rows, self.parallel = max_queue_rows, parallel
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.queued_rows = 0
        self.pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="mtcli-score")
        self.closing = False
        self.in_flight: set[asyncio.Task] = set()   # batches being scored
        self._loop_task: asyncio.Task | None = None

    # ------------------------------------------------------------------ requests

    @staticmethod
    def tokens(rows: list[tuple[str, ...]]) -> int:
        """About the tokens the rows take, what the budget counts: a WordPiece token per 4 characters
        and the special tokens, capped at the model's 128 per text. An estimate on purpose: the
        scorer tokenizes every row anyway, and a third tokenization here cost a tenth of the
        throughput at int8."""
        return sum(min(len(text) // 4 + 2, 128) for row in rows for text in row)

    async def submit(self, task: str | None, rows: list[tuple[str, ...]]) -> np.ndarray:
        """The predictions (or embeddings) of `rows`, once their batch has run."""
        if self.closing:
            raise ShuttingDown()
        if self.queued_rows + len(rows) > self.max_queue_rows:
            raise QueueFull()
        job = Job(task, rows, self.tokens(rows), asyncio.get_running_loop().create_future())
        self.queued_rows += len(rows)
        self._gauge()
        await self.queue.put(job)
        return await job.future

    # ------------------------------------------------------------------ the loop

    def start(self) -> None:
        """Run the loop in the current event loop (again after `stop`: a fresh queue and worker)."""
        if self.closing:
            self.closing, self.queue, self.queued_rows = False, asyncio.Queue(), 0
            self.pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="mtcli-score")
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, timeout: float = 30.0) -> None:
        """Take no new jobs; finish the queued ones (within `timeout`), then stop."""
        self.closing = True
        deadline = time.perf_counter() + timeout
        while (self.queued_rows or self.in_flight) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        if self._loop_task is not None:
            self._loop_task.cancel()
        self.pool.shutdown(wait=False)

    async def _run(self) -> None:
        """Gather a batch whenever one of the `parallel` scoring slots is free."""
        slots = asyncio.Semaphore(self.parallel)
        while True:
            await slots.acquire()
            batch = await self._gather()
            task = asyncio.get_running_loop().create_task(self._score(batch))
            self.in_flight.add(task)
            task.add_done_callback(lambda t: (self.in_flight.discard(t), slots.release()))

    async def _gather(self) -> list[Job]:
        first = await self.queue.get()
        batch, tokens = [first], first.tokens
        if self.queue.empty():
            return batch  # no load: score it now
        deadline = first.enqueued + self.max_wait
        while tokens < self.max_batch_tokens:
            if self.queue.empty():
                wait = deadline - time.perf_counter()
                if wait <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), timeout=wait)
                except asyncio.TimeoutError:
                    break
            else:
                job = self.queue.get_nowait()
            if tokens + job.tokens > self.max_batch_tokens:
                self.queue.put_nowait(job)  # the next batch's first (order within a task is kept per job)
                break
            batch.append(job)
            tokens += job.tokens
        return batch

    async def _score(self, batch: list[Job]) -> None:
        self.queued_rows -= sum(len(job.rows) for job in batch)
        self._gauge()
        loop = asyncio.get_running_loop()
        by_task: dict[str | None, list[Job]] = {}
        for job in batch:
            by_task.setdefault(job.task, []).append(job)
        for task, jobs in by_task.items():
            rows = [row for job in jobs for row in job.rows]
            try:
                results = await loop.run_in_executor(self.pool, self._run_rows, task, rows)
            except Exception as e:
                if len(jobs) == 1:
                    if not jobs[0].future.done():
                        jobs[0].future.set_exception(e)
                else:   # one job's rows may be what failed: each alone, so only that job hears of it
                    await self._one_by_one(task, jobs)
                continue
            start = 0
            for job in jobs:
                if not job.future.done():  # its client may have gone
                    job.future.set_result(results[start:start + len(job.rows)])
                start += len(job.rows)
            if self.metrics is not None:
                self.metrics.batch(task, len(rows), sum(job.tokens for job in jobs))

    async def _one_by_one(self, task: str | None, jobs: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        for job in jobs:
            try:
                result = await loop.run_in_executor(self.pool, self._run_rows, task, job.rows)
            except Exception as e:
                if not job.future.done():
                    job.future.set_exception(e)
                continue
            if not job.future.done():
                job.future.set_result(result)

    def _run_rows(self, task: str | None, rows: list[tuple[str, ...]]) -> np.ndarray:
        if task is EMBED:
            return self.scorer.embed([row[0] for row in rows], batch_size=BATCH_SIZE)
        return self.scorer.score_window(task, rows, BATCH_SIZE)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue(self.queued_rows)
