"""Messages and progress bars on stderr, so stdout stays clean for --json output."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Callable, Iterator

from rich.console import Console

console = Console(stderr=True, highlight=False)


class _RichHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        prefix = "[yellow]warning:[/] " if record.levelno >= logging.WARNING else ""
        console.print(prefix + record.getMessage(), markup=True, soft_wrap=True)


def setup_logging(verbose: bool = False) -> None:
    log = logging.getLogger("pet")
    if not any(isinstance(h, _RichHandler) for h in log.handlers):
        log.addHandler(_RichHandler())
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def info(message: str) -> None:
    logging.getLogger("pet").info(message)


class LineReporter:
    """Progress as plain lines for logs and batch jobs, where a redrawn bar would be invisible.

    Quiet for work that finishes within ``interval`` seconds; after that one line per interval
    with the rate and the time left, and a last line when the work is done.
    """

    def __init__(self, description: str, total: int, interval: float, clock: Callable[[], float] = time.monotonic):
        self.description, self.total, self.interval, self.clock = description, total, interval, clock
        self.done = 0
        self.started = self.last = clock()
        self.reported = False

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval and self.done < self.total:
            self.last, self.reported = now, True
            elapsed = now - self.started
            rate = self.done / elapsed if elapsed > 0 else 0.0
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            console.print(
                f"{self.description}: {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), "
                f"{rate:.3g}/s, elapsed {clock_time(elapsed)}, eta {clock_time(left)}",
                markup=False, soft_wrap=True,
            )

    def finish(self) -> None:
        if self.reported:
            console.print(f"{self.description}: {self.done}/{self.total} done in {clock_time(self.clock() - self.started)}",
                          markup=False, soft_wrap=True)


def clock_time(seconds: float) -> str:
    """0:07:05 style, as rich's bar shows it; '?' while no rate is known."""
    if seconds == float("inf"):
        return "?"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


@contextlib.contextmanager
def progress(description: str, total: int, interval: float = 30.0) -> Iterator[Callable[[int], None]]:
    """A bar with rate and ETA on a terminal; periodic lines (see LineReporter) when stderr is a file.

    ``PET_NO_PROGRESS=1`` silences both (the test suite and the benchmark set it).
    """
    if os.environ.get("PET_NO_PROGRESS") == "1":
        yield lambda n=1: None
        return
    if not console.is_terminal:
        reporter = LineReporter(description, total, interval)
        yield reporter.advance
        reporter.finish()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
