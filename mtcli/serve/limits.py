"""The server's limits and batching settings, with their defaults (the CLI's flags read them
here). Imports neither torch nor FastAPI."""

from __future__ import annotations

from dataclasses import dataclass

from mtcli.core.errors import UserError


@dataclass(frozen=True)
class Limits:
    max_batch_tokens: int = 32768    # tokens gathered into one batch (the offline scorer's window is ~2,048 rows)
    max_wait_ms: float = 5.0         # how long a batch waits for more rows (under load only)
    max_queue_rows: int = 4096       # rows waiting at most; beyond: 503
    max_body_bytes: int = 1 << 20    # request body
    max_text_chars: int = 20_000     # one text
    retry_after_s: int = 1           # what a 503 asks the client to wait
    parallel_batches: int = 1        # batches scored at once, each onnxruntime run on cores / this threads

    def check(self) -> None:
        for name in ("max_batch_tokens", "max_queue_rows", "max_body_bytes", "max_text_chars", "retry_after_s",
                     "parallel_batches"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise UserError(f"--max-wait-ms {self.max_wait_ms:g}: must be between 0 and 10000")
