"""`mtcli serve`: an export's tasks over HTTP (FastAPI), rows of concurrent requests batched
together (batcher.py). Torch-free.

    GET  /v1/tasks                 the tasks: kind, input columns, labels or range, output
    POST /v1/tasks/{task}/score    {"rows": [...]}: sentences, or [sentence1, sentence2] pairs
    POST /v1/embed                 {"sentences": [...]}: the encoder's pooled embeddings
    GET  /healthz                  liveness;  GET /readyz: readiness (503 while stopping)
    GET  /metrics                  Prometheus;  GET /docs: the interactive docs

A score result holds what `mtcli score`'s output columns hold: the label (the class name)
and the class probabilities (for a binary task, the positive class's), or the score.
Anything a client gets wrong is a 4xx with one line naming the field, `{"error": "rows[3]:
empty text; ..."}`, and the server keeps serving; a full queue is 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtcli.core.errors import UserError
from mtcli.inference.scorer import BATCH_SIZE, Scorer, as_texts
from mtcli.serve.batcher import EMBED, Batcher, QueueFull, ShuttingDown
from mtcli.serve.limits import Limits
from mtcli.serve.metrics import ServeMetrics


class ScoreRequest(BaseModel):
    rows: list[str | list[str]] = Field(
        description="One task's rows: sentences, or [sentence1, sentence2] pairs, as the task declares",
        examples=[[["A dog runs.", "A dog is running."]]])


class EmbedRequest(BaseModel):
    sentences: list[str] = Field(description="Sentences to embed", examples=[["A dog runs."]])


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def task_description(scorer: Scorer, name: str) -> dict:
    """What GET /v1/tasks says of one task (from the manifest)."""
    from mtcli.inference.score import output_header

    task = scorer.tasks[name]
    entry = {"name": name, "kind": task.kind, "inputs": list(task.text), "output": output_header(task)[1:],
             "metric": task.metric}
    if task.labels:
        entry["labels"] = list(task.labels)
    if task.range is not None:
        entry["range"] = list(task.range)
    if task.title:
        entry["title"] = task.title
    return entry


def results(scorer: Scorer, task: str, predictions: np.ndarray) -> list[dict]:
    """Predictions as the response's results: what the CLI's output columns hold."""
    spec = scorer.tasks[task]
    if spec.kind == "regression":
        return [{"score": float(p)} for p in predictions]
    if spec.kind == "binary":
        positive = spec.labels[1]
        return [{"label": spec.labels[int(p > 0.5)], "probabilities": {positive: float(p)}} for p in predictions]
    return [{"label": spec.labels[int(row.argmax())], "probabilities": dict(zip(spec.labels, map(float, row)))}
            for row in predictions]


def checked_rows(scorer: Scorer, task: str, rows: list, limits: Limits) -> list[tuple[str, ...]]:
    """The rows as text tuples, by the rules of `mtcli score` (422 naming the row otherwise)."""
    if task not in scorer.tasks:
        raise ApiError(404, f"task {task!r}: unknown; this server has {', '.join(scorer.tasks)}")
    arity = len(scorer.tasks[task].text)
    if len(rows) > limits.max_queue_rows:
        raise ApiError(413, f"rows: {len(rows)} rows, more than the server queues at once ({limits.max_queue_rows}): "
                            f"send them in smaller requests")
    checked = []
    for i, row in enumerate(rows):
        try:
            texts = as_texts(row, arity, i)
        except UserError as e:
            raise ApiError(422, str(e)) from None
        for j, text in enumerate(texts):
            if len(text) > limits.max_text_chars:
                field = f"rows[{i}]" + (f"[{j}]" if arity == 2 else "")
                raise ApiError(422, f"{field}: {len(text)} characters, over the limit of {limits.max_text_chars}")
        checked.append(texts)
    return checked


@dataclass
class Service:
    """What the routes serve from: the loaded export, how rows reach it (`submit(task, rows)`,
    awaited: the batcher, or Ray Serve's batching), the metrics and limits, and whether the
    server is stopping."""
    scorer: Scorer
    submit: object
    metrics: ServeMetrics
    limits: Limits
    closing: object = lambda: False  # noqa: E731


def load_scorer(model_dir, *, int8: bool, providers, threads: int | None = None) -> Scorer:
    """The export, every graph loaded and probed now: a missing or damaged export is one
    UserError before any server starts (the same errors `mtcli score` gives)."""
    scorer = Scorer(model_dir, int8=int8, providers=providers, threads=threads, sessions=1)   # the batcher runs batches side by side
    for name in scorer.tasks:
        scorer.score(name, [("warm up",) * len(scorer.tasks[name].text)])
    scorer.embed(["warm up"])
    return scorer


def warm_up(scorer: Scorer) -> None:
    """Run every graph once at the largest shape the batcher gives it (BATCH_SIZE rows of texts
    at the export's max_length): onnxruntime's memory arena grows to the size it keeps before the
    first request, so memory stays flat under load instead of creeping up as rarer, larger
    shapes arrive, and no early request pays for the growth."""
    longest = [f"{i} " + "word " * scorer.manifest["max_length"] for i in range(BATCH_SIZE)]
    for name, task in scorer.tasks.items():
        scorer.score(name, [(text,) * len(task.text) for text in longest])
    scorer.embed(longest)


def create_app(model_dir: str | Path = "export", *, int8: bool = False, limits: Limits = Limits(),
               providers=("cuda", "cpu"), threads: int | None = None) -> FastAPI:
    """The application over one export, its rows batched by a Batcher in this process."""
    limits.check()
    threads = threads or max(1, (os.cpu_count() or 1) // limits.parallel_batches)
    scorer = load_scorer(model_dir, int8=int8, providers=providers, threads=threads)
    warm_up(scorer)
    metrics = ServeMetrics()
    batcher = Batcher(scorer, max_batch_tokens=limits.max_batch_tokens, max_wait_ms=limits.max_wait_ms,
                      max_queue_rows=limits.max_queue_rows, parallel=limits.parallel_batches, metrics=metrics)

    async def submit(task, rows):
        try:
            return await batcher.submit(task, rows)
        except QueueFull:
            raise ApiError(503, f"the queue is full ({limits.max_queue_rows} rows): retry in {limits.retry_after_s} s",
                           {"Retry-After": str(limits.retry_after_s)}) from None
        except ShuttingDown:
            raise ApiError(503, "the server is stopping", {"Retry-After": str(limits.retry_after_s)}) from None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    service = Service(scorer, submit, metrics, limits, closing=lambda: batcher.closing)
    app = new_app(str(model_dir), lifespan)
    app.state.scorer, app.state.batcher = scorer, batcher
    add_routes(app, lambda: service)
    return app


def new_app(model_dir: str, lifespan=None) -> FastAPI:
    return FastAPI(title="mtcli", version=_version(), lifespan=lifespan,
                   description=f"Scores the tasks of an mtcli export ({model_dir}): score rows, embed sentences.")


def add_routes(app: FastAPI, service_of) -> None:
    """The routes, served from `service_of()` (a Service: resolved per request, so the same
    routes serve a local batcher or a Ray Serve replica)."""
    _install_handlers(app, service_of)

    @app.get("/v1/tasks", summary="The tasks this server scores")
    async def tasks():
        scorer = service_of().scorer
        return {"tasks": [task_description(scorer, name) for name in scorer.tasks]}

    @app.post("/v1/tasks/{task}/score", summary="Score rows of a task")
    async def score(task: str, body: ScoreRequest):
        service = service_of()
        rows = checked_rows(service.scorer, task, body.rows, service.limits)
        predictions = await service.submit(task, rows) if rows else np.zeros(0)
        # a JSONResponse of plain values: FastAPI's own encoding walks every float in Python
        return JSONResponse({"task": task, "results": results(service.scorer, task, predictions) if rows else []})

    @app.post("/v1/embed", summary="Embed sentences")
    async def embed(body: EmbedRequest):
        service = service_of()
        limits = service.limits
        rows = [_as_row("sentences", i, s, limits) for i, s in enumerate(body.sentences)]
        if len(rows) > limits.max_queue_rows:
            raise ApiError(413, f"sentences: {len(rows)}, more than the server queues at once "
                                f"({limits.max_queue_rows}): send them in smaller requests")
        vectors = await service.submit(EMBED, rows) if rows else np.zeros((0, 0))
        return JSONResponse({"dim": service.scorer.manifest["embedding"]["dim"], "embeddings": vectors.tolist()})

    @app.get("/healthz", summary="Liveness")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: 503 while stopping")
    async def readyz():
        service = service_of()
        if service.closing():
            raise ApiError(503, "stopping")
        return {"status": "ready", "tasks": list(service.scorer.tasks)}

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def prometheus():
        metrics = service_of().metrics
        return Response(metrics.render(), media_type=metrics.content_type)


def _as_row(field: str, index: int, sentence: str, limits: Limits) -> tuple[str]:
    try:
        row = as_texts(sentence, 1, index)
    except UserError as e:
        raise ApiError(422, str(e).replace("rows[", f"{field}[", 1)) from None
    if len(sentence) > limits.max_text_chars:
        raise ApiError(422, f"{field}[{index}]: {len(sentence)} characters, over the limit of {limits.max_text_chars}")
    return row


def _install_handlers(app: FastAPI, service_of) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        """FastAPI's own answers (a body it cannot parse, a path or method it has no route for)
        in the one shape every answer has: {"error": one line}."""
        if error.status_code == 400:
            message = "body: not valid JSON (not UTF-8, nested too deeply, or a number too long to read)"
        elif error.status_code == 404:
            message = f"{request.url.path}: no such endpoint; see /docs"
        elif error.status_code == 405:
            message = f"{request.method} {request.url.path}: method not allowed; see /docs"
        else:
            message = str(error.detail).splitlines()[0] if error.detail else "error"
        return JSONResponse({"error": message}, status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {"loc": ("body",), "msg": "invalid", "type": ""}
        if first.get("type") == "json_invalid":
            return JSONResponse({"error": f"body: not valid JSON ({first.get('ctx', {}).get('error', 'malformed')})"},
                                status_code=400)
        return JSONResponse({"error": f"{_field(first['loc'])}: {first['msg']}"}, status_code=422)

    app.add_middleware(Gate, service_of=service_of)


class Gate:
    """Every request's way in and out, as a plain ASGI middleware (Starlette's @middleware("http")
    costs a task and two memory streams a request): a body over the limit is refused (413, one
    line) before anything parses it, whether it declares its length or streams in chunks; every
    answer is counted and timed by route and status."""

    def __init__(self, app, service_of):
        self.app, self.service_of = app, service_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        service = self.service_of()
        limit = service.limits.max_body_bytes
        declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
        body, more = b"", declared.isdigit() and int(declared) <= limit
        too_big = not more
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                too_big = True
                break
        if too_big:
            response = JSONResponse({"error": f"body: over the size limit of {limit} bytes"}, status_code=413)
            service.metrics.request("body", 413, time.perf_counter() - start)
            return await response(scope, receive, send)
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        status = []

        async def replay():
            return pending.pop() if pending else await receive()

        async def answer(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, replay, answer)
        except asyncio.CancelledError:
            # the server stopped before this request finished (past --shutdown-timeout): say so, 503,
            # instead of the 500 and traceback the server would give a cancelled request
            if status:
                raise
            status.append(503)
            await JSONResponse({"error": "the server stopped before this request finished: retry it"},
                               status_code=503, headers={"Retry-After": str(service.limits.retry_after_s)})(
                scope, receive, send)
        finally:   # the route is in the scope once the router has matched it
            route = getattr(scope.get("route"), "path", "other")
            service.metrics.request(route, status[0] if status else 500, time.perf_counter() - start)


def _field(loc) -> str:
    """('body', 'rows', 3, 1) -> 'rows[3][1]'."""
    parts = [p for p in loc if p != "body"]
    if not parts:
        return "body"
    name = str(parts[0])
    for part in parts[1:]:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name


def _version() -> str:
    from mtcli.core.version import __version__

    return __version__
