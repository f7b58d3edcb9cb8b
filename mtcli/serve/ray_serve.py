"""`mtcli serve --engine ray`: the same application (the same routes, checks and answers) as a
Ray Serve deployment: N replicas, each one Scorer, its rows batched by Ray Serve's
`@serve.batch` (concurrent requests to a replica gathered up to MAX_BATCH_JOBS, waiting at
most --max-wait-ms), and Ray Serve's own back-pressure (requests queued per replica beyond
--max-queue-rows are refused with 503). Ray restarts a replica that dies; a client retrying a
request that failed with it is answered by another. `/metrics` reports the replica that
answers; Ray's own metrics cover the deployment. Torch-free; needs the `ray` extra.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path


from ray import serve

from mtcli.core.errors import UserError
from mtcli.serve.app import Limits, Service, add_routes, load_scorer, new_app, warm_up
from mtcli.serve.batcher import EMBED
from mtcli.serve.metrics import ServeMetrics

MAX_BATCH_JOBS = 64          # requests one @serve.batch call gathers at most

_REPLICA: dict[str, Service] = {}   # this replica's Service, set when it starts


def current_service() -> Service:
    """The Service of the replica answering."""
    return _REPLICA["service"]


def register(service: Service) -> None:
    """Make `service` the replica's. A module-level function: Ray pickles the deployment class
    by value (its globals a copy), but this by reference, so it sets the module's own state."""
    _REPLICA["service"] = service


ingress = new_app("ray")     # Ray Serve's ingress: the routes resolve the replica's Service per request
add_routes(ingress, current_service)


@serve.deployment(name="mtcli")
@serve.ingress(ingress)
class Replica:
    def __init__(self, model_dir: str, int8: bool, limits: Limits, providers: tuple[str, ...]):
        self.scorer = load_scorer(model_dir, int8=int8, providers=providers)
        warm_up(self.scorer)
        self.metrics = ServeMetrics()
        self.score_batch.set_batch_wait_timeout_s(limits.max_wait_ms / 1000)
        register(Service(self.scorer, self.submit, self.metrics, limits))

    async def submit(self, task, rows):
        return await self.score_batch((task, rows))

    @serve.batch(max_batch_size=MAX_BATCH_JOBS, batch_wait_timeout_s=0.005)
    async def score_batch(self, jobs: list[tuple[str | None, list]]) -> list:
        """One call for the requests Ray gathered: each task's rows scored together, every
        request given its own rows back."""
        out: list = [None] * len(jobs)
        by_task: dict = {}
        for i, (task, rows) in enumerate(jobs):
            by_task.setdefault(task, []).append(i)
        for task, members in by_task.items():
            rows = [row for i in members for row in jobs[i][1]]
            if task is EMBED:
                scored = await asyncio.to_thread(self.scorer.embed, [r[0] for r in rows])
            else:
                scored = await asyncio.to_thread(self.scorer.score_window, task, rows)
            start = 0
            for i in members:
                out[i] = scored[start:start + len(jobs[i][1])]
                start += len(jobs[i][1])
            self.metrics.batch(task, len(rows), 0)
        return out


def serve_on_ray(model_dir: str | Path, *, int8: bool, limits: Limits, host: str, port: int, replicas: int,
                 address: str | None, providers=("cpu",), say=print, block: bool = True) -> None:
    """Deploy the application on Ray Serve (a local Ray instance, or `address`), then wait for
    SIGINT/SIGTERM and shut the deployment down."""
    import ray

    from mtcli.inference.ray_data import quiet_ray

    limits.check()
    if replicas < 1:
        raise UserError(f"--replicas {replicas}: must be at least 1")
    load_scorer(model_dir, int8=int8, providers=providers)  # its one-line errors before Ray starts
    quiet_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # Ray's core (started by ray.init) handles SIGTERM by killing the process; ours only asks to stop,
    # from now on, so a signal while the deployment starts shuts it down cleanly too
    stop = threading.Event()

    def stop_on_signal(*_):
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop_on_signal)
    serve.start(http_options={"host": host, "port": port})
    application = Replica.options(num_replicas=replicas, max_queued_requests=limits.max_queue_rows) \
        .bind(str(Path(model_dir).resolve()), int8, limits, tuple(providers))
    serve.run(application, name="mtcli", route_prefix="/", blocking=False)
    say(f"serving {model_dir} on Ray Serve ({replicas} replica{'s' if replicas > 1 else ''}) at "
        f"http://{host}:{port}  docs: http://{host}:{port}/docs")
    if not block:
        return
    while not stop.wait(0.5):
        for signum in (signal.SIGINT, signal.SIGTERM):  # in case a Ray thread put its own handler back
            if signal.getsignal(signum) is not stop_on_signal:
                signal.signal(signum, stop_on_signal)
    serve.shutdown()
    say("stopped")


