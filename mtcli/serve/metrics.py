"""Prometheus metrics of the server (prometheus-client), on a registry of its own:

    mtcli_requests_total{endpoint, status}     requests answered, by endpoint and HTTP status
    mtcli_request_seconds{endpoint}            latency histogram
    mtcli_batch_rows / mtcli_batch_tokens      size histograms of the batches scored
    mtcli_queue_rows                           rows waiting to be batched
    mtcli_rows_total{task}                     rows scored (rows/s: rate())

Torch-free."""

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("mtcli_requests", "Requests answered", ("endpoint", "status"), registry=self.registry)
        self.latency = Histogram("mtcli_request_seconds", "Request latency", ("endpoint",), buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.batch_rows = Histogram("mtcli_batch_rows", "Rows per scored batch", buckets=ROW_BUCKETS,
                                    registry=self.registry)
        self.batch_tokens = Histogram("mtcli_batch_tokens", "Tokens per scored batch", buckets=TOKEN_BUCKETS,
                                      registry=self.registry)
        self.queue_rows = Gauge("mtcli_queue_rows", "Rows waiting to be batched", registry=self.registry)
        self.rows = Counter("mtcli_rows", "Rows scored or embedded", ("task",), registry=self.registry)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def batch(self, task: str | None, rows: int, tokens: int) -> None:
        self.batch_rows.observe(rows)
        self.batch_tokens.observe(tokens)
        self.rows.labels(task or "embed").inc(rows)

    def queue(self, rows: int) -> None:
        self.queue_rows.set(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)
