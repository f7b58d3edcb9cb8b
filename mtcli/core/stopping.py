"""Stopping at a safe point: SIGINT and SIGTERM during training are noted, not acted on at
once, so that the loop finishes its step, saves `last/` and stops with a resumable run.
A second signal stops at once (the files being written are still removed on the way out).
Torch-free."""

import signal
import threading
from contextlib import contextmanager

from mtcli.core.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by the first SIGINT/SIGTERM; `signum` says which."""

    def __init__(self):
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None


@contextmanager
def deferred_stop():
    """Within the block, the first SIGINT/SIGTERM sets the yielded StopRequest; a second raises
    Interrupted. Outside the main thread (where Python allows no handlers) nothing changes."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def note(signum, frame):
        if request.requested:
            raise Interrupted(signum, "stopped at once (a second signal); last/ holds the last checkpoint saved")
        request.signum = signum

    previous = {s: signal.signal(s, note) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
