"""mtcli.train.progress: the lines a run prints where no progress bar shows (nohup, CI, a job)."""

import io

from rich.console import Console

from mtcli.train.progress import CountLines, duration


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=200), out


def test_a_counted_job_prints_its_count_rate_and_time_left_where_no_bar_shows():
    shown, out = console(terminal=False)
    lines = CountLines(shown, every=0.0)
    lines.start("teacher sst: rows labelled", 6_000)
    lines.advance(2_048)
    lines.advance(2_048)
    lines.advance(1_904)   # the last window: the bar's end says it, no line
    printed = out.getvalue().splitlines()
    assert [line.split("  ")[0] for line in printed] == ["teacher sst: rows labelled: 2,048/6,000",
                                                         "teacher sst: rows labelled: 4,096/6,000"]
    assert all("/s  eta " in line for line in printed)


def test_no_lines_on_a_terminal_or_before_the_interval():
    shown, out = console(terminal=True)
    lines = CountLines(shown, every=0.0)
    lines.start("x", 10)
    lines.advance(5)
    quiet, quiet_out = console(terminal=False)
    waiting = CountLines(quiet, every=3600.0)
    waiting.start("x", 10)
    waiting.advance(5)
    assert out.getvalue() == "" and quiet_out.getvalue() == ""


def test_duration():
    assert [duration(s) for s in (42, 185, 3720)] == ["42s", "3m05s", "1h02m"]
