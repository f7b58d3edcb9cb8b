"""The server's limits and batching settings, with their defaults (the CLI's flags read them
here). Imports neither torch nor FastAPI."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

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
    shutdown_timeout_s: float = 30.0  # on SIGTERM: how long in-flight requests may take to finish

    def check(self) -> None:
        """Every setting within its bounds (BOUNDS), a finite number: one UserError naming the flag."""
        for setting in fields(self):
            value, (low, high) = getattr(self, setting.name), BOUNDS[setting.name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise UserError(f"--{flag(setting.name)} {value}: must be a number from {low:g} to {high:g}")


def flag(name: str) -> str:
    """The CLI flag of a setting: max_wait_ms -> max-wait-ms; shutdown_timeout_s -> shutdown-timeout."""
    return name.removesuffix("_s").replace("_", "-") if name.endswith("timeout_s") else name.replace("_", "-")


BOUNDS = {   # (lowest, highest) of each setting: past these a server is misconfigured, not tuned
    "max_batch_tokens": (1, 10_000_000),
    "max_wait_ms": (0, 10_000),
    "max_queue_rows": (1, 10_000_000),
    "max_body_bytes": (1, 1 << 30),
    "max_text_chars": (1, 10_000_000),
    "retry_after_s": (1, 3600),
    "parallel_batches": (1, 256),
    "shutdown_timeout_s": (0, 3600),
}
