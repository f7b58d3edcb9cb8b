"""What a run says while it trains where no progress bar shows (nohup, CI, a cluster job: stdout
is not a terminal): a line every --progress-every seconds with the step, the epoch, the losses,
examples/s and the time left, measured from the first line this process printed (a resumed
run's estimate counts its own steps only)."""

from __future__ import annotations

import time


class ProgressLines:
    def __init__(self, console, total_steps: int, epochs: int, every: float):
        self.console, self.total_steps, self.epochs, self.every = console, total_steps, epochs, every
        self.last = 0.0                  # when the last line was printed (0: not yet)
        self.clock = (0.0, 0)            # (time, step) the estimate counts from

    def step(self, step: int, epoch: int, losses: str, speed: float) -> None:
        """After a logged step: a line, if the output is no terminal and --progress-every has passed."""
        now = time.perf_counter()
        if self.console.is_terminal or now - self.last < self.every:
            return
        if self.last == 0.0:  # the first call: start the clock
            self.last, self.clock = now, (now, step)
            return
        started, first_step = self.clock
        left = (self.total_steps - step) * (now - started) / max(step - first_step, 1)
        self.console.print(f"step {step}/{self.total_steps}  epoch {epoch}/{self.epochs}  {losses}  {speed:.0f} ex/s  "
                           f"eta {duration(left)}", highlight=False)
        self.last = now


def duration(seconds: float) -> str:
    """1h02m, 3m05s, 42s."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
